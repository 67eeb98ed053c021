/* asam segment with an EfficientSAM checkpoint (cmd_segment.c dispatches here on the family
 * read from the --model file). */
#ifndef ASAM_CLI_SEGMENT_ESAM_H
#define ASAM_CLI_SEGMENT_ESAM_H

typedef struct {
    const char *model_path, *image_path, *out_path, *overlay_path, *save_path, *emb_path;
    const char *mask_path; /* refused: EfficientSAM has no mask prompt */
    int multimask, json;
    int n_boxes, n_points;
    const float *boxes;  /* (n_boxes, 4) original pixels */
    const float *points; /* (n_points, 2) */
    const float *labels; /* (n_points) */
} segment_esam_args;

/* Returns the command's exit code (0, 1 failure, 2 usage). */
int segment_efficientsam(const segment_esam_args *a);

#endif
