/* The promptable segmenter that ASAM tunes, attacks and evaluates: SAM or EfficientSAM, told
 * apart from the checkpoint's tensor names. A thin dispatch so tune / attack / eval are
 * written once: both families see prompts in their S x S input frame and give (B, C, S/4,
 * S/4) low-res logits, and both tune the same two tensors (iou_token, mask_tokens).
 *
 * S is asam_segmenter_img_size(): 1024 for the official models and EfficientSAM, the
 * checkpoint's own input side for a SAM built at another size (e.g. SAM-mini at 128). Below,
 * "the S frame", "S/16" (embedding side) and "S/4" (low-res side) read 1024, 64 and 256 for the
 * official models. The input frame differs: SAM's is the ResizeLongestSide image zero-padded to
 * S; for EfficientSAM the whole 1024 frame is the image stretched to 1024x1024. */
#ifndef ASAM_SEGMENTER_H
#define ASAM_SEGMENTER_H

#include "asam/efficientsam.h"
#include "asam/sam.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    asam_sam *sam; /* exactly one of the two is set */
    asam_esam *esam;
} asam_segmenter;

/* Load a SAM or EfficientSAM checkpoint (family from its names). _frozen: for a model that will
 * not be trained (asam_sam_load_frozen, asam_esam_load_frozen: under bf16 the image encoder's
 * GEMM weights are held in bf16 as they are read). */
int asam_segmenter_load(const char *path, asam_segmenter *s);
int asam_segmenter_load_frozen(const char *path, asam_segmenter *s);
void asam_segmenter_free(asam_segmenter *s);
const char *asam_segmenter_family(const asam_segmenter *s); /* "sam" / "efficientsam" */
int asam_segmenter_dim(const asam_segmenter *s);            /* embedding / token width */
int asam_segmenter_img_size(const asam_segmenter *s);       /* S: the input side */
int asam_segmenter_grid(const asam_segmenter *s);           /* S / 16: the embedding side */
int asam_segmenter_lowres(const asam_segmenter *s);         /* S / 4: the low-res mask side */
/* Hash of some encoder weights (keys embedding caches). */
uint64_t asam_segmenter_encoder_key(const asam_segmenter *s);

/* An RGB image of any size -> embedding (1, D, S/16, S/16) with the family's own
 * pre-processing; frame: the original size and the image's extent in the S frame. */
asam_tensor *asam_segmenter_encode_image(asam_ctx *ctx, const asam_segmenter *s,
                                         const asam_image *img, asam_sam_sizes *frame);
/* (B, 3, S, S) pixels 0..255 already laid out in the S frame -> the encoder input
 * (normalised; differentiable). */
asam_tensor *asam_segmenter_input255(asam_ctx *ctx, const asam_segmenter *s, asam_tensor *x);
asam_tensor *asam_segmenter_encode(asam_ctx *ctx, const asam_segmenter *s, asam_tensor *x);

/* Prompts in the S frame, one row per mask: a box and/or points with labels. EfficientSAM
 * takes a box as two points labelled 2 and 3 after the points, and at most 6 points per row
 * (its decoder's limit: later ones are dropped, as the official code does); it has no mask
 * prompt. */
typedef struct {
    int batch, n_points;
    const float *points;     /* (B, N, 2) or NULL */
    const float *labels;     /* (B, N) */
    const float *boxes;      /* (B, 4) x0 y0 x1 y1 or NULL */
    asam_tensor *mask_input; /* SAM only: (B, 1, S/4, S/4) or NULL */
} asam_seg_prompt;
int asam_segmenter_decode(asam_ctx *ctx, const asam_segmenter *s, asam_tensor *embedding,
                          const asam_seg_prompt *p, int multimask, asam_tensor **low_res,
                          asam_tensor **iou);

asam_tensor *asam_segmenter_iou_token(const asam_segmenter *s);   /* (1, D) */
asam_tensor *asam_segmenter_mask_tokens(const asam_segmenter *s); /* (4, D) */
void asam_segmenter_tokens_requires_grad(const asam_segmenter *s, int on);
/* The whole model in the family's official layout (.pth/.pt: torch.save; else safetensors). */
int asam_segmenter_save(const asam_segmenter *s, const char *path);
/* Same with (key, value) metadata strings (see asam_sam_save_meta). */
int asam_segmenter_save_meta(const asam_segmenter *s, const char *path, const char *const *metadata,
                             size_t n_meta);

#ifdef __cplusplus
}
#endif
#endif
