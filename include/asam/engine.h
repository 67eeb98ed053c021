/* The tensor engine: f32 tensors in an arena, ops with forward and backward kernels, and a
 * reverse-mode autograd tape.
 *
 * Memory model
 *   - An asam_ctx owns an arena: one large virtual reservation with a bump pointer. Every
 *     tensor an op creates (header + data), every tape node and every gradient buffer lives
 *     there. asam_ctx_mark()/asam_ctx_release() free everything allocated after a mark in O(1)
 *     and hand the pages back to the OS, so inference can run block by block in bounded memory
 *     (asam_ctx_release_keep() keeps one result across a release).
 *   - Parameters (model weights) are "persistent" tensors made with asam_param_new(): malloc'd,
 *     outliving any ctx, freed with asam_param_free(). Their gradients accumulate across
 *     backward calls until asam_param_zero_grad().
 *   - All tensors are contiguous row-major (the last dim varies fastest); strides are implied by
 *     the shape. asam_reshape() and asam_slice0() return views sharing memory; permutes,
 *     general slices, concat and pad make copies.
 *
 * Errors
 *   Ops return NULL on failure (bad shapes, out of memory) after recording the message in the
 *   ctx (sticky: the first error wins). An op given a NULL input returns NULL, so a model's
 *   forward can be written straight through and checked once at the end with asam_ctx_ok().
 *
 * Autograd
 *   When grad is enabled in the ctx and an op input requires a gradient, the op records a node.
 *   asam_backward() runs the tape in reverse from a scalar; asam_backward_from() from any tensor
 *   with a given output gradient. Tensors needing no gradient cost nothing extra.
 *   asam_grad_checkpoint() runs a segment without recording and re-runs it during backward
 *   (gradient checkpointing). After backward a leaf's grad (an input or parameter marked with
 *   asam_set_requires_grad) holds dL/d(leaf); an op result's grad is the pass's scratch: a
 *   reshape or a residual add hands its buffer on to its input, which keeps adding into it.
 */
#ifndef ASAM_ENGINE_H
#define ASAM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ASAM_MAX_DIMS 6

typedef struct asam_ctx asam_ctx;
typedef struct asam_node asam_node;

typedef struct asam_tensor {
    float *data; /* numel floats, contiguous */
    float *grad; /* same size, NULL until backward (or zero_grad) creates it */
    int ndim;    /* 0 = scalar (numel 1) */
    int64_t shape[ASAM_MAX_DIMS];
    int64_t numel;
    int requires_grad;        /* a gradient is wanted for this tensor (leaf or op result) */
    int persistent;           /* made by asam_param_new: not in an arena */
    asam_node *node;          /* the op that produced it while recording, else NULL */
    struct asam_tensor *base; /* for views: the tensor whose data (and grad) this aliases */
    const char *name;         /* optional, for messages */
    uint64_t grad_stamp;      /* the backward pass that last reached it (autograd.c) */
    /* A frozen weight held in bf16 (see "weights held in bf16" below): numel values, same
     * layout as data, or NULL. When set, data is NULL: the fp32 copy was freed. A 3x3
     * convolution weight that the AMX tile kernel takes keeps only conv_taps[0] (the same
     * values) until another path asks for these (asam_param_bf16). */
    uint16_t *bf16;
    /* A held 3x3 convolution weight's copies repacked per tap for the AMX convolution (the
     * forward's, the adjoint's), made on first use and freed with bf16; else NULL. */
    uint16_t *conv_taps[2];
    /* A held linear weight's copy packed in the AMX tile panels (linear_amx.c), made on its
     * first use as a linear layer's weight and freed with bf16; else NULL. */
    uint16_t *linear_tiles;
} asam_tensor;

/* ---- threads ---------------------------------------------------------------------------- */
void asam_set_threads(int n); /* OpenMP + OpenBLAS threads; default: OMP_NUM_THREADS or cores */
int asam_get_threads(void);

/* ---- precision ---------------------------------------------------------------------------- */
/* Arithmetic of the GEMM-shaped kernels (matmul, linear, conv2d, conv_transpose2d, attention),
 * forward and backward, process-wide. ASAM_FP32 (the default) is the reference. ASAM_BF16
 * rounds both operands of every product to bf16 and accumulates in fp32 (on AMX through
 * oneDNN when the build has it, else AVX512-BF16); everything else (norms, softmax, activations,
 * the tensors themselves) stays fp32. */
typedef enum { ASAM_FP32 = 0, ASAM_BF16 = 1 } asam_precision;
/* 0, or -1 (asam_last_error says why: this CPU has no AVX512-BF16) leaving the precision as is. */
int asam_set_precision(asam_precision p);
asam_precision asam_get_precision(void);
int asam_bf16_supported(void); /* 1 when this CPU and build can run ASAM_BF16 */
/* "fp32" / "bf16" -> p; 0, or -1 for anything else. */
int asam_precision_parse(const char *s, asam_precision *p);
const char *asam_precision_name(asam_precision p);
/* The kernels in use, e.g. "cpu-bf16 (oneDNN brg:avx512_core_bf16)". */
const char *asam_backend_describe(void);

/* Weights held in bf16. Under ASAM_BF16 a persistent tensor that needs no gradient
 * (requires_grad 0) and has at least 4096 elements is converted to bf16 the first time it is
 * the weight of asam_linear, asam_conv2d or asam_conv_transpose2d, and its fp32 copy is freed:
 * half the memory, and no re-rounding on every call. The products are bit-identical to rounding
 * the fp32 weight on the fly (the same rounding of the same values). Trainable weights keep
 * their fp32 master copy and are rounded per call as before. The fp32 value of a held weight
 * is gone: switching back to ASAM_FP32 computes with its bf16 value, a saver writes it as a
 * BF16 tensor (asam_param_bf16_held), and asam_set_requires_grad(t, 1) restores an fp32 copy
 * from the bf16 values. On by default; asam_set_weight_holding(0) turns it off (weights are then
 * rounded per call, today's path before holding existed). Returns the previous setting. */
int asam_set_weight_holding(int on);
/* The same conversion done at load: under ASAM_BF16 (with holding on) hold W in bf16 now, as
 * its first use as such a weight would; otherwise nothing. For loaders of models whose 2-D and
 * 4-D tensors are all frozen GEMM weights (the SD bundle's UNet and VAE, asam_binder's
 * hold_weights): each fp32 copy is freed as soon as it is read, so neither the load nor the
 * first forward peaks at the fp32 weights. Returns 1 when W is now held. */
int asam_weight_hold_now(asam_tensor *W);
/* The bf16 values of a held weight (asam_param_bf16_held), in its own layout: t->bf16, rebuilt
 * (and kept) from the AMX convolution's packed tiles when those are all it keeps; NULL when t
 * is not held or memory runs out. */
const uint16_t *asam_param_bf16(const asam_tensor *t);
/* Bytes of fp32 and of bf16 weight data held by persistent tensors (all of them, process-wide),
 * for memory reports and tests. */
void asam_param_bytes(size_t *fp32_bytes, size_t *bf16_bytes);

/* ---- context, arena --------------------------------------------------------------------- */
/* reserve_bytes: virtual size of the arena (0 = 256 GiB; pages are committed on touch). */
asam_ctx *asam_ctx_new(size_t reserve_bytes);
void asam_ctx_free(asam_ctx *ctx);
void asam_ctx_reset(asam_ctx *ctx); /* drop every tensor, node and error */
/* Hand the pages above the arena's top back to the OS. Releases and resets keep them mapped
 * (up to the high-water mark) so the next pass does not fault them in again. */
void asam_ctx_trim(asam_ctx *ctx);
typedef struct {
    size_t offset;
    asam_node *tape_tail;
} asam_mark;
asam_mark asam_ctx_mark(asam_ctx *ctx);
void asam_ctx_release(asam_ctx *ctx, asam_mark m);
/* Release to m but keep `keep` (allocated after m): returns the moved tensor, which becomes a
 * leaf (no node). Used by inference loops to bound memory. */
asam_tensor *asam_ctx_release_keep(asam_ctx *ctx, asam_mark m, asam_tensor *keep);
size_t asam_ctx_used(const asam_ctx *ctx); /* bytes in use in the arena */
size_t asam_ctx_peak(const asam_ctx *ctx); /* high-water mark of asam_ctx_used */
/* Bytes of arena pages kept mapped above asam_ctx_used (reused without new memory; until
 * asam_ctx_trim). */
size_t asam_ctx_spare(const asam_ctx *ctx);
void asam_ctx_reset_peak(asam_ctx *ctx);
/* Raw scratch memory from the arena (64-byte aligned), freed by the next release/reset. */
void *asam_ctx_alloc(asam_ctx *ctx, size_t bytes);

/* Gradient recording on/off; returns the previous state. Default: on. */
int asam_ctx_set_grad(asam_ctx *ctx, int enabled);
int asam_ctx_grad_enabled(const asam_ctx *ctx);
/* Gradient checkpointing on/off (default on); returns the previous state. Off,
 * asam_grad_checkpoint() records its segment like any other code: the activations stay until
 * backward and nothing is re-run (more memory, less time; the same gradients but for the order
 * in which they are summed). */
int asam_ctx_set_checkpointing(asam_ctx *ctx, int enabled);

int asam_ctx_ok(const asam_ctx *ctx);            /* 1 while no error was recorded */
const char *asam_ctx_error(const asam_ctx *ctx); /* the first error, or NULL */
/* Record an error (printf-style) and return NULL; for op and model code. */
asam_tensor *asam_ctx_fail(asam_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void asam_ctx_clear_error(asam_ctx *ctx);

/* ---- tensor creation ---------------------------------------------------------------------- */
asam_tensor *asam_new(asam_ctx *ctx, int ndim, const int64_t *shape); /* uninitialised */
asam_tensor *asam_zeros(asam_ctx *ctx, int ndim, const int64_t *shape);
asam_tensor *asam_full(asam_ctx *ctx, int ndim, const int64_t *shape, float value);
asam_tensor *asam_from_data(asam_ctx *ctx, int ndim, const int64_t *shape, const float *data);
asam_tensor *asam_scalar(asam_ctx *ctx, float value);
asam_tensor *asam_new_like(asam_ctx *ctx, const asam_tensor *t);
/* A leaf alias of t's data (no gradient link). */
asam_tensor *asam_detach(asam_ctx *ctx, asam_tensor *t);
/* Mark a leaf as needing a gradient (its grad is allocated at backward). */
void asam_set_requires_grad(asam_tensor *t, int on);

/* Persistent tensors (weights): zero-filled, malloc'd, 64-byte aligned. */
asam_tensor *asam_param_new(int ndim, const int64_t *shape);
void asam_param_free(asam_tensor *t);
void asam_param_zero_grad(asam_tensor *t); /* allocates the grad buffer if needed */
/* 1 when t is a weight held in bf16 only (t->data NULL; t->bf16 set, or only the AMX
 * convolution's packed tiles of its values). */
int asam_param_bf16_held(const asam_tensor *t);

/* Shape helpers */
int asam_same_shape(const asam_tensor *a, const asam_tensor *b);
void asam_shape_str(const asam_tensor *t, char *buf, size_t n); /* "(1, 64, 64, 768)" */
/* Shorthand for shape literals: asam_new(ctx, ASAM_SHAPE(B, N, C)). */
#define ASAM_SHAPE(...)                                                                            \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]) {                 \
        __VA_ARGS__                                                                                \
    }

/* ---- autograd ----------------------------------------------------------------------------- */
/* loss must be a scalar (numel 1); its gradient is 1. */
int asam_backward(asam_ctx *ctx, asam_tensor *loss);
/* Backward from any recorded tensor with the given output gradient (numel floats). */
int asam_backward_from(asam_ctx *ctx, asam_tensor *out, const float *grad_out);

/* Gradient checkpointing: out = fn(inputs) is computed without recording; during backward fn
 * is re-run with recording and differentiated. Gradients reach `inputs` and persistent
 * parameters used inside fn; any other arena tensor fn uses must not need a gradient. fn must
 * be deterministic. */
typedef asam_tensor *(*asam_segment_fn)(asam_ctx *ctx, asam_tensor *const *inputs, int n_inputs,
                                        void *user);
asam_tensor *asam_grad_checkpoint(asam_ctx *ctx, asam_segment_fn fn, asam_tensor *const *inputs,
                                  int n_inputs, void *user);

/* ---- ops: every op has a forward and a backward kernel ------------------------------------ */
/* Elementwise, numpy-style broadcasting. */
asam_tensor *asam_add(asam_ctx *ctx, asam_tensor *a, asam_tensor *b);
asam_tensor *asam_sub(asam_ctx *ctx, asam_tensor *a, asam_tensor *b);
asam_tensor *asam_mul(asam_ctx *ctx, asam_tensor *a, asam_tensor *b);
asam_tensor *asam_div(asam_ctx *ctx, asam_tensor *a, asam_tensor *b);
asam_tensor *asam_scale(asam_ctx *ctx, asam_tensor *x, float s);      /* x * s */
asam_tensor *asam_add_scalar(asam_ctx *ctx, asam_tensor *x, float s); /* x + s */
asam_tensor *asam_axpby(asam_ctx *ctx, float a, asam_tensor *x, float b,
                        asam_tensor *y); /* ax+by, same shape */

/* Activations */
asam_tensor *asam_gelu(asam_ctx *ctx, asam_tensor *x);      /* erf form */
asam_tensor *asam_gelu_tanh(asam_ctx *ctx, asam_tensor *x); /* tanh approximation */
/* GEGLU over the last dim: x (..., 2F) -> x[..., :F] * gelu(x[..., F:]) (erf form). */
asam_tensor *asam_geglu(asam_ctx *ctx, asam_tensor *x);
asam_tensor *asam_quick_gelu(asam_ctx *ctx, asam_tensor *x); /* x * sigmoid(1.702 x) */
asam_tensor *asam_silu(asam_ctx *ctx, asam_tensor *x);
asam_tensor *asam_relu(asam_ctx *ctx, asam_tensor *x);
asam_tensor *asam_sigmoid(asam_ctx *ctx, asam_tensor *x);
asam_tensor *asam_tanh(asam_ctx *ctx, asam_tensor *x);
asam_tensor *asam_softmax(asam_ctx *ctx, asam_tensor *x); /* over the last dim */

/* Reductions */
asam_tensor *asam_sum(asam_ctx *ctx, asam_tensor *x);  /* all elements -> scalar */
asam_tensor *asam_mean(asam_ctx *ctx, asam_tensor *x); /* all elements -> scalar */
asam_tensor *asam_sum_dim(asam_ctx *ctx, asam_tensor *x, int dim, int keepdim);
asam_tensor *asam_mean_dim(asam_ctx *ctx, asam_tensor *x, int dim, int keepdim);

/* Shape ops. dims may be negative (counted from the end). */
asam_tensor *asam_reshape(asam_ctx *ctx, asam_tensor *x, int ndim,
                          const int64_t *shape); /* view; one -1 allowed */
asam_tensor *asam_permute(asam_ctx *ctx, asam_tensor *x, const int *perm);
asam_tensor *asam_transpose(asam_ctx *ctx, asam_tensor *x, int d0, int d1);
asam_tensor *asam_concat(asam_ctx *ctx, asam_tensor *const *xs, int n, int dim);
asam_tensor *asam_slice(asam_ctx *ctx, asam_tensor *x, int dim, int64_t start,
                        int64_t end); /* copy, [start,end) */
asam_tensor *asam_slice0(asam_ctx *ctx, asam_tensor *x, int64_t start,
                         int64_t end); /* view along dim 0 */
/* Constant padding; pads[2*d] before and pads[2*d+1] after dim d, for all ndim dims. */
asam_tensor *asam_pad(asam_ctx *ctx, asam_tensor *x, const int64_t *pads, float value);
asam_tensor *asam_contiguous_copy(asam_ctx *ctx, asam_tensor *x); /* differentiable copy */

/* Linear algebra. a (..., M, K) @ b (..., K, N) -> (..., M, N), batch dims broadcast (b may
 * be 2-D); trans_a / trans_b treat the last two dims of a / b as transposed. */
asam_tensor *asam_matmul(asam_ctx *ctx, asam_tensor *a, asam_tensor *b, int trans_a, int trans_b);
/* x (..., in) @ w^T + b: w (out, in) as torch.nn.Linear, b (out) or NULL. */
asam_tensor *asam_linear(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b);
/* asam_geglu(asam_linear(x, w, b)): w (2F, in). When nothing is recorded (inference) and the
 * backend can, both in one pass without the (..., 2F) product (bf16 on AMX); the same values
 * either way. */
asam_tensor *asam_linear_geglu(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b);
/* r + asam_linear(x, w, b) (a residual branch's output projection): in inference, where the
 * backend can, without the product written first; the same values either way. */
asam_tensor *asam_linear_add(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                             asam_tensor *r);
/* out[i] = asam_linear(x, w[i], b[i]) for i < n (1 .. 4; b NULL or entries NULL: no bias), e.g.
 * attention's q, k and v projections of one input. When nothing is recorded and the backend
 * can, in one pass over x (bf16 on AMX: each block of x rounded once); the same values either
 * way. 0, or -1 with the error in ctx. */
int asam_linear_many(asam_ctx *ctx, asam_tensor *x, int n, asam_tensor *const *w,
                     asam_tensor *const *b, asam_tensor **out);

/* Convolutions, NCHW. conv2d: w (O, C, kh, kw), b (O), (N, O) (a bias for each image) or
 * NULL, square stride/padding.
 * conv_transpose2d: w (C, O, kh, kw) as torch.nn.ConvTranspose2d, padding 0. */
asam_tensor *asam_conv2d(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b, int stride,
                         int padding);
/* r + asam_conv2d(x, w, b) (a residual block's last convolution and its skip): in inference,
 * where the kernel can, with the bias and r added as the results are written; the same values
 * either way. */
asam_tensor *asam_conv2d_add(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                             int stride, int padding, asam_tensor *r);
asam_tensor *asam_conv_transpose2d(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                                   int stride);

/* Normalisation. layer_norm: over the last dim, w/b (C) or NULL. layer_norm2d: NCHW over C
 * (SAM's LayerNorm2d). group_norm: x (N, C, ...), groups | C, w/b (C) or NULL. */
asam_tensor *asam_layer_norm(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                             float eps);
asam_tensor *asam_layer_norm2d(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                               float eps);
asam_tensor *asam_group_norm(asam_ctx *ctx, asam_tensor *x, int groups, asam_tensor *w,
                             asam_tensor *b, float eps);
/* silu(group_norm(x)): one fused pass in inference, the two ops when recording. */
asam_tensor *asam_group_norm_silu(asam_ctx *ctx, asam_tensor *x, int groups, asam_tensor *w,
                                  asam_tensor *b, float eps);

/* Scaled dot-product attention, memory-efficient (processes query blocks; never holds a whole
 * Nq x Nk score matrix per head) in forward and backward.
 *   q (B, H, Nq, D), k (B, H, Nk, D), v (B, H, Nk, Dv) -> (B, H, Nq, Dv)
 *   logits = scale * q k^T [+ bias] [+ rel_h/rel_w] [causal mask]
 * bias: (Bb, Hb, Nq, Nk) with Bb in {1, B}, Hb in {1, H}; no gradient flows to it.
 * Decomposed relative position (SAM): rel_h (B, H, Nq, kh), rel_w (B, H, Nq, kw) with
 * Nk = kh * kw; logits[q, i*kw + j] += rel_h[q, i] + rel_w[q, j]; gradients flow to both. */
typedef struct {
    float scale; /* 0 -> 1/sqrt(D) */
    int causal;  /* key j > query i masked out (needs Nq == Nk) */
    asam_tensor *bias;
    asam_tensor *rel_h, *rel_w;
} asam_attn_opts;
asam_tensor *asam_attention(asam_ctx *ctx, asam_tensor *q, asam_tensor *k, asam_tensor *v,
                            const asam_attn_opts *opts);
/* The same with the heads side by side in each token's row, as the q / k / v projections make
 * them: q (B, Nq, heads d), k (B, Nk, heads d), v (B, Nk, heads dv) -> (B, Nq, heads dv); what
 * splitting the heads out (reshape + permute), asam_attention and merging them back give. In
 * inference without a bias, relative terms or a causal mask (under bf16 on AMX, in fp32 on
 * AVX-512) the heads are read in place (no permuted copies). */
asam_tensor *asam_attention_heads(asam_ctx *ctx, asam_tensor *q, asam_tensor *k, asam_tensor *v,
                                  int heads, const asam_attn_opts *opts);

/* Resampling of NCHW (or any (..., H, W)) tensors, PyTorch F.interpolate semantics:
 * nearest (src = floor(dst * in/out)) and bilinear with align_corners=False, no antialias. */
asam_tensor *asam_resize_nearest(asam_ctx *ctx, asam_tensor *x, int64_t out_h, int64_t out_w);
asam_tensor *asam_resize_bilinear(asam_ctx *ctx, asam_tensor *x, int64_t out_h, int64_t out_w);
/* The exact arithmetic of torch 1.13's CPU kernels (double source index, fused multiply-adds;
 * see op_resize_torch.c), as EfficientSAM needs: bicubic (A = -0.75, taps clamped, no
 * antialias) and bilinear, both align_corners=False. Bit-exact against the official outputs. */
asam_tensor *asam_resize_bicubic(asam_ctx *ctx, asam_tensor *x, int64_t out_h, int64_t out_w);
asam_tensor *asam_resize_bilinear_torch(asam_ctx *ctx, asam_tensor *x, int64_t out_h,
                                        int64_t out_w);

/* Rows of weight (V, D) picked by ids[0..n) -> (n, D); gradient flows to weight. */
asam_tensor *asam_embedding(asam_ctx *ctx, asam_tensor *weight, const int64_t *ids, int64_t n);

/* Losses -> scalars. Targets need no gradient.
 * bce_with_logits: mean over all elements. mse: mean of (a-b)^2 (grads to both).
 * dice: x, target (N, ...): per row 1 - (2 sum(p t) + smooth)/(sum p + sum t + smooth) with
 * p = sigmoid(x), averaged over the N rows. */
asam_tensor *asam_bce_with_logits(asam_ctx *ctx, asam_tensor *logits, asam_tensor *target);
asam_tensor *asam_dice_loss(asam_ctx *ctx, asam_tensor *logits, asam_tensor *target, float smooth);
asam_tensor *asam_mse(asam_ctx *ctx, asam_tensor *a, asam_tensor *b);

/* Point sampling (HQ-SAM / Mask2Former point-sampled losses). */
/* Bilinear sampling of x (N, C, H, W) at P points per batch row: coords (N, P, 2) = (x, y)
 * in [0, 1] of the whole map -> (N, C, P). Same as detectron2's point_sample, i.e.
 * grid_sample(x, 2 * coords - 1, align_corners=False, padding_mode="zeros"). Gradient flows
 * to x; coords are constants (copied). */
asam_tensor *asam_point_sample(asam_ctx *ctx, asam_tensor *x, const float *coords, int64_t P);

/* Ops of the ASAM latent attack. */
/* ASAM's soft clamp to [0,1] that keeps a gradient outside: x in [0,1] -> x;
 * x > 1 -> (tanh(1000 (x-1)) + 10000) / 10001; x < 0 -> tanh(1000 x) / 10000. */
asam_tensor *asam_soft_clamp01(asam_ctx *ctx, asam_tensor *x);
asam_tensor *asam_abs(asam_ctx *ctx, asam_tensor *x);  /* gradient sign(x) (0 at 0) */
asam_tensor *asam_sqrt(asam_ctx *ctx, asam_tensor *x); /* gradient 0.5 / sqrt(x) (0 at 0) */
/* ||x||_2 over all elements -> scalar; gradient x / ||x|| (0 when x = 0). */
asam_tensor *asam_l2_norm(asam_ctx *ctx, asam_tensor *x);
/* sign(x) in {-1, 0, 1}; piecewise constant: no gradient flows through it. */
asam_tensor *asam_sign(asam_ctx *ctx, asam_tensor *x);

#ifdef __cplusplus
}
#endif
#endif
