/* SA-1B per-image annotation files (sa_N.json). */
#ifndef ASAM_SA1B_H
#define ASAM_SA1B_H

#include "asam/rle.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    long long id;
    asam_rle rle;   /* segmentation */
    double bbox[4]; /* x, y, w, h as stored */
    double area;
    double predicted_iou;
    double stability_score;
} asam_sa1b_annotation;

typedef struct {
    long long image_id;
    int width, height;
    char *file_name;
    size_t n;
    asam_sa1b_annotation *anns;
} asam_sa1b_image;

/* Parse from a file or from memory (name used in error messages). */
int asam_sa1b_read(const char *path, asam_sa1b_image *out);
int asam_sa1b_parse(const char *json, size_t len, const char *name, asam_sa1b_image *out);
void asam_sa1b_free(asam_sa1b_image *img);

#ifdef __cplusplus
}
#endif
#endif
