/* Where asam's data files live (the CLIP BPE vocabulary, the tiny demo models).
 *
 * Lookup order: $ASAM_DATA_DIR when set; else share/asam relative to the file that holds this
 * code (libasam.so, or the program it is linked into statically), found with dladdr() and
 * realpath(), then relative to /proc/self/exe. From each of those folders D it tries the
 * installed layout (D/<relative path from bindir or libdir to datadir/asam>, fixed at
 * configure time) and the build tree's D/share/asam. Nothing points into the source tree, so
 * an installed prefix can be moved as a whole. */
#ifndef ASAM_DATA_DIR_H
#define ASAM_DATA_DIR_H

#ifdef __cplusplus
extern "C" {
#endif

/* The data folder (it contains clip/), or NULL with asam_last_error() set. The string is
 * static: computed once per process (ASAM_DATA_DIR is read on the first call). */
const char *asam_data_dir(void);

#ifdef __cplusplus
}
#endif
#endif
