/* Segmentation datasets named on the command line, behind one iterator.
 *
 * Specs (paths must not contain ':'):
 *   sa1b:DIR              sa_N.jpg + sa_N.json (SA-1B per-image annotations, RLE) in a folder
 *   sa1b:FILE.tar         an SA-1B shard, read with libarchive as a stream (sequential access
 *                         is one pass; going backwards re-opens the archive)
 *   adv:ADVDIR:GTDIR      ASAM's adversarial layout: ADVDIR/sa_N.png (or .jpg) with the original
 *                         annotations GTDIR/sa_N.json, or the official per-mask PNGs
 *                         GTDIR/sa_N/segmentation_j.png (utils/dataloader_sam.py:87: j = 0, 1, ..
 *                         below the folder's entry count). asam_dataset_get resizes an image
 *                         whose size differs from the annotation's (ASAM saves 512x512
 *                         generations) to it (PIL bilinear); asam_dataset_get_native leaves it
 *                         as the official training does and gives the masks their own size
 *   coco:ANN.json:IMGDIR[:skip-crowd]  COCO instances JSON (polygons, compressed or uncompressed
 *                         RLE); iscrowd=1 annotations are masks like the others, as the official
 *                         eval's annToMask (utils/dataloader_COCO.py:61-72); skip-crowd leaves
 *                         them out (a crowd region is not one object)
 *   masks:IMGDIR:MASKDIR  image + binary mask PNG pairs matched by file stem (HRSOD, CAMO, BIG);
 *                         foreground = gray value > 128
 *   idmap:IMGDIR:MAPDIR[:ignore=V]  instance maps MAPDIR/STEM.png: every distinct value (gray
 *                         value, or 0xRRGGBB for colour maps) is one mask; 0 (black) is
 *                         background, V (optional, compared with that same number) is ignored
 * Items are sorted by file name (version order: sa_2 before sa_10). Empty masks are dropped
 * (an item can come back with n_masks = 0: callers skip it); items without annotations are left
 * out of the index. Errors name the file and the problem. */
#ifndef ASAM_DATASET_H
#define ASAM_DATASET_H

#include "asam/image.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char name[256];   /* file stem, e.g. "sa_1" */
    asam_image image; /* RGB (c = 3) */
    int n_masks;
    int h, w;       /* = image.h, image.w */
    int mh, mw;     /* mask size: = h, w except from asam_dataset_get_native */
    uint8_t *masks; /* (n_masks, mh, mw) row-major, values 0/1 */
} asam_sample;

typedef struct asam_dataset asam_dataset;

int asam_dataset_open(const char *spec, asam_dataset **out);
void asam_dataset_close(asam_dataset *ds);
size_t asam_dataset_count(const asam_dataset *ds);
const char *asam_dataset_item_name(const asam_dataset *ds, size_t i); /* stem */
const char *asam_dataset_spec(const asam_dataset *ds);
/* Read item i: image + masks. max_masks > 0 keeps only the first max_masks non-empty masks
 * (SA-1B images hold ~100 full-resolution masks; tuning needs four). */
int asam_dataset_get(asam_dataset *ds, size_t i, int max_masks, asam_sample *out);
/* As asam_dataset_get, but an adv: image keeps its own size and its masks theirs (mh, mw): the
 * official tuning reads the 512x512 adversarial JPEG as it is and squashes the full-size masks
 * to its frame (utils/dataloader_sam.py:75, :88, utils/dataloader.py:250-259). Other kinds: the
 * same as asam_dataset_get. */
int asam_dataset_get_native(asam_dataset *ds, size_t i, int max_masks, asam_sample *out);
void asam_sample_free(asam_sample *s);

#ifdef __cplusplus
}
#endif
#endif
