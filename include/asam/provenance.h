/* Provenance of an output or state file: the options and inputs that determine it, as an
 * ordered list of (name, value) pairs, and a 64-bit hash of that list. Stages record the list
 * with what they write (JSON records: a "provenance" object; safetensors: the metadata key
 * "provenance"); a resume compares the recorded list with the current one and refuses, naming
 * the first option that differs, unless told to redo the work (--force).
 *
 *   asam_prov *p = asam_prov_new("attack");
 *   asam_prov_num(p, "--alpha", o->alpha);
 *   asam_prov_file(p, "image", path);          // content hash of an input file
 *   char *js = asam_prov_json(p);              //
 * {"stage":"attack","hash":"...","--alpha":"0.02",...} if (asam_prov_check(p, recorded_js,
 * out_path)) -> error names the option
 */
#ifndef ASAM_PROVENANCE_H
#define ASAM_PROVENANCE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct asam_prov asam_prov;

asam_prov *asam_prov_new(const char *stage);
void asam_prov_free(asam_prov *p);
void asam_prov_str(asam_prov *p, const char *name, const char *value);
void asam_prov_num(asam_prov *p, const char *name, double value);
void asam_prov_int(asam_prov *p, const char *name, long long value);
/* An input file: its size and the FNV-1a hash of its bytes (a model file: of its first and
 * last MiB and its size, so multi-GB checkpoints cost no full read); a folder: the names,
 * sizes and such hashes of its files, recursively. Missing path: value "absent". */
void asam_prov_file(asam_prov *p, const char *name, const char *path);
/* Hash of the list (16 hex digits into hex[17]). */
void asam_prov_hash(const asam_prov *p, char hex[17]);
/* {"stage": ..., "hash": ..., name: value, ...} (malloc'ed) */
char *asam_prov_json(const asam_prov *p);
/* 0 when recorded_json (a provenance object, or a JSON document holding one under
 * "provenance") has the same hash; otherwise -1 with one error line naming what: "WHAT: made
 * with --alpha 0.02, now 0.03 (use --force to redo it)". A record without provenance counts
 * as different ("made by an unrecorded run"). */
int asam_prov_check(const asam_prov *p, const char *recorded_json, const char *what);

#ifdef __cplusplus
}
#endif
#endif
