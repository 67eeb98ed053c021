/* Stable Diffusion 1.5, text side and sampling: the CLIP BPE tokenizer, the CLIP text encoder,
 * the DDIM scheduler (both timestep conventions), classifier-free guidance, DDIM inversion and
 * the model bundle (CompVis single file or diffusers folder). The image models (UNet, VAE,
 * ControlNet) are in asam/sd_models.h. */
#ifndef ASAM_SD_H
#define ASAM_SD_H

#include <stddef.h>
#include <stdint.h>

#include "asam/engine.h"
#include "asam/image.h"
#include "asam/sd_models.h"
#include "asam/util.h"

struct asam_checkpoint; /* asam/checkpoint.h */
struct asam_checkpoint;

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CLIP BPE tokenizer ----------------------------------------------------------------- */
#define ASAM_CLIP_CONTEXT 77
#define ASAM_CLIP_BOS 49406 /* <|startoftext|> */
#define ASAM_CLIP_EOS 49407 /* <|endoftext|>, also SD 1.5's padding id */

typedef struct asam_clip_tokenizer asam_clip_tokenizer;

/* vocab.json (token -> id) and merges.txt ("#version" line then one merge per line). */
int asam_clip_tokenizer_load(const char *vocab_json, const char *merges_txt,
                             asam_clip_tokenizer **out);
/* DIR/vocab.json + DIR/merges.txt; dir NULL = the built-in copy (asam_clip_default_dir()). */
int asam_clip_tokenizer_load_dir(const char *dir, asam_clip_tokenizer **out);
void asam_clip_tokenizer_free(asam_clip_tokenizer *t);
/* Folder holding the CLIP vocab/merges: asam_data_dir()/clip (see asam/data_dir.h). */
const char *asam_clip_default_dir(void);

/* openai/CLIP text clean-up: the ftfy fixes the fixtures need (HTML entities, fullwidth forms,
 * Latin ligatures, curly quotes, control characters, NFC composition of Latin/Greek/Cyrillic
 * accents), html.unescape twice, whitespace collapse + strip, lower-case. Returns a malloc'd
 * UTF-8 string, or NULL on out of memory. */
char *asam_clip_clean_text(const char *text);
/* Token ids of the cleaned text without BOS/EOS (malloc'd *ids, *n entries). pieces: NULL or
 * receives the malloc'd BPE piece strings (byte-level unicode, "</w>" ends), one per id, freed
 * with asam_clip_free_pieces. */
int asam_clip_encode(const asam_clip_tokenizer *t, const char *text, int64_t **ids, size_t *n,
                     char ***pieces);
void asam_clip_free_pieces(char **pieces, size_t n);
/* SD framing: [BOS] + ids[:75] + [EOS], padded to 77 with EOS. Returns the raw id count (before
 * truncation), or -1. */
int asam_clip_tokenize(const asam_clip_tokenizer *t, const char *text,
                       int64_t ids[ASAM_CLIP_CONTEXT]);

/* ---- CLIP text encoder (Hugging Face CLIPTextModel names) ------------------------------- */
typedef struct asam_clip_text asam_clip_text;

/* prefix: "cond_stage_model.transformer.text_model." (CompVis) or "text_model." (diffusers
 * text_encoder). heads: 0 = infer (width/64 for widths >= 256, else width/16, the fixtures'
 * tiny encoder), or the value of config.json's num_attention_heads. Weights are copied. */
int asam_clip_text_load(const struct asam_checkpoint *ck, const char *prefix, int heads,
                        asam_clip_text **out);
/* The same for a text encoder that will not be trained (the SD bundle's): under bf16 its
 * attention and MLP weights are held in bf16 as they are read. */
int asam_clip_text_load_frozen(const struct asam_checkpoint *ck, const char *prefix, int heads,
                               asam_clip_text **out);
void asam_clip_text_free(asam_clip_text *m);
/* Every loaded weight with its name (no prefix; arrays belong to the model). */
int asam_clip_text_params(const asam_clip_text *m, asam_tensor *const **params,
                          const char *const **names, size_t *n);
int asam_clip_text_width(const asam_clip_text *m);
int asam_clip_text_layers(const asam_clip_text *m);
/* ids (B, 77) -> last_hidden_state (B, 77, D) after the final LayerNorm. hidden: NULL or an
 * array of n_layers+1 pointers receiving the residual stream before layer 0 (embeddings) and
 * after each layer. Differentiable w.r.t. the weights. NULL on error (message in ctx). */
asam_tensor *asam_clip_text_forward(asam_ctx *ctx, const asam_clip_text *m, const int64_t *ids,
                                    int batch, asam_tensor **hidden);

/* ---- DDPM schedule and DDIM ------------------------------------------------------------- */
#define ASAM_DDPM_STEPS 1000

/* SD's "scaled linear" schedule: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2 in
 * float64, alphas_cumprod = cumprod(1 - betas), stored float32 (as CompVis checkpoints do). */
void asam_sd_alphas_cumprod(float alphas_cumprod[ASAM_DDPM_STEPS]);

/* A DDIM timestep list in sampling order (descending t) with each step's alphas.
 * steps_offset 1 = CompVis DDIMSampler "uniform": c = 1000/S (integer), t = 1, 1+c, ... < 1000
 *   (more than S steps when S does not divide 1000, e.g. 31 for S = 30) — also SD 1.5's
 *   diffusers config when S divides 1000;
 * steps_offset 0 = ASAM / diffusers DDIMScheduler(steps_offset=0, "leading"): t = i*(1000/S),
 *   i = 0..S-1 (980, 960, ..., 0 for 50 steps).
 * a_prev of the last step is alphas_cumprod[0] (set_alpha_to_one=False). */
typedef struct {
    int n;                             /* number of steps */
    int t[ASAM_DDPM_STEPS];            /* timesteps, sampling order (descending) */
    float alpha[ASAM_DDPM_STEPS];      /* alphas_cumprod[t[i]] */
    float alpha_prev[ASAM_DDPM_STEPS]; /* alphas_cumprod of the next (lower) t, or [0] at the end */
    float alphas_cumprod[ASAM_DDPM_STEPS];
} asam_ddim;
/* Returns 0, or -1 (steps outside 1..1000 or offset not 0/1). */
int asam_ddim_init(asam_ddim *s, int steps, int steps_offset);

/* One DDIM step (eta 0), written with engine ops so it is differentiable:
 *   pred_x0 = (x - sqrt(1-a_t) eps) / sqrt(a_t)
 *   x_prev  = sqrt(a_prev) pred_x0 + sqrt(1-a_prev) eps
 * pred_x0_out: NULL or receives pred_x0. */
asam_tensor *asam_ddim_step(asam_ctx *ctx, asam_tensor *x, asam_tensor *eps, float a_t,
                            float a_prev, asam_tensor **pred_x0_out);
/* DDIM inversion "next step" (null-text inversion / DESIGN.md 1.1):
 *   x_next = sqrt(a_next) (x - sqrt(1-a_cur) eps) / sqrt(a_cur) + sqrt(1-a_next) eps. */
asam_tensor *asam_ddim_invert_step(asam_ctx *ctx, asam_tensor *x, asam_tensor *eps, float a_cur,
                                   float a_next);
/* Alphas of inversion step i (ascending order: i = 0 uses the lowest timestep): a_cur is
 * alphas_cumprod of the previous (lower) DDIM timestep, or alphas_cumprod[0] for i = 0, and
 * a_next = alphas_cumprod[t]; returns the UNet timestep t. */
int asam_ddim_invert_alphas(const asam_ddim *s, int i, float *a_cur, float *a_next);
/* Classifier-free guidance: e_u + w (e_c - e_u). */
asam_tensor *asam_cfg_combine(asam_ctx *ctx, asam_tensor *e_u, asam_tensor *e_c, float w);

/* ---- guided UNet evaluation and sampling loops ------------------------------------------ */
typedef struct {
    const asam_unet *unet;
    const asam_controlnet *controlnet; /* NULL = none */
    asam_tensor *hint;                 /* (1,3,8h,8w) in [0,1] when controlnet */
    float control_scale;               /* 1 = ControlNet's default */
    asam_tensor *cond;                 /* (1,77,C) */
    asam_tensor *uncond;               /* (1,77,C); may be NULL when guidance == 1 */
    float guidance;                    /* 1 = conditional branch only */
    int batch_cfg;                     /* 1: uncond+cond as one batch of 2; 0: two calls */
    int control_cond_only;             /* 0: ControlNet in both branches (ASAM, ControlNet's
                                          own sampler); 1: conditional branch only */
} asam_sd_guide;

/* eps for latent x (1,4,h,w) at timestep t with guidance; e_u/e_c: NULL or receive the two
 * branch outputs (e_u NULL when guidance == 1). */
asam_tensor *asam_sd_eps(asam_ctx *ctx, const asam_sd_guide *g, asam_tensor *x, int t,
                         asam_tensor **e_u, asam_tensor **e_c);

/* Progress callback: step i of n finished (1-based). */
typedef void (*asam_sd_progress)(int i, int n, void *user);
/* A ready-made callback printing "LABEL: step i/n  t=T  RATE  ETA hh:mm:ss" lines on stderr
 * (the shared progress line, asam/util.h); user = an asam_sd_progress_state set up by
 * asam_sd_progress_start. */
typedef struct {
    const char *label;
    const asam_ddim *sched; /* NULL, or the schedule (to print t; inversion prints ascending t) */
    int ascending;
    asam_progress bar;
} asam_sd_progress_state;
void asam_sd_progress_start(asam_sd_progress_state *st, const char *label, const asam_ddim *sched,
                            int ascending);
void asam_sd_progress_stderr(int i, int n, void *user);

/* Full DDIM sampling loop from x_T. When the ctx records gradients the whole chain is kept on
 * the tape (differentiable); otherwise each step's temporaries are released. */
asam_tensor *asam_ddim_sample(asam_ctx *ctx, const asam_sd_guide *g, const asam_ddim *s,
                              asam_tensor *x_T, asam_sd_progress cb, void *user);
/* DDIM inversion x_0 -> x_T (ascending timesteps) with the guide (normally guidance 1).
 * trajectory: NULL or (s->n + 1) * numel(x_0) floats receiving x_0, x_1, ..., x_T. */
asam_tensor *asam_ddim_invert(asam_ctx *ctx, const asam_sd_guide *g, const asam_ddim *s,
                              asam_tensor *x_0, float *trajectory, asam_sd_progress cb, void *user);

/* ---- null-text inversion and its guided chain (ASAM's generator, step 1) ------------------ */
typedef struct {
    float guidance;       /* CFG scale of the sampling being inverted for (7.5) */
    int inner_steps;      /* Adam steps per timestep (10) */
    float lr;             /* sampling step i uses lr * (1 - i/100) (0.01) */
    float eps, eps_slope; /* early stop at loss < eps + i * eps_slope (1e-5, 2e-5) */
    int verbose;          /* timing lines on stderr */
    /* The UNet's (and ControlNet's) activations in the inner steps: ASAM_NULL_CKPT_AUTO keeps
     * them (no gradient checkpointing: one forward less per step; gradients summed in another
     * order, ~1e-6 relative) when they fit in the memory available; ASAM_NULL_CKPT_ON always
     * checkpoints, _OFF never does. */
    int checkpointing;
    /* tests: NULL, or called after every inner Adam step with its loss and the embedding */
    void (*trace)(void *user, int i, int j, float loss, const float *emb, size_t n);
    void *trace_user;
} asam_null_text_opts;
enum { ASAM_NULL_CKPT_AUTO = 0, ASAM_NULL_CKPT_ON = 1, ASAM_NULL_CKPT_OFF = 2 };

/* DDIM inversion of z0 (1,4,h,w) with the guide g (its cond, guidance 1; ControlNet as g says),
 * then for each sampling step i (t descending) the unconditional embedding, started from uncond0
 * (1,77,D), that makes the guided step (guidance o->guidance) land on the inversion trajectory.
 * Writes x_T (numel(z0) floats), null_emb (s->n x numel(uncond0)) and null_loss (s->n).
 * Returns 0, or -1 with the ctx error set. */
int asam_null_text_invert(asam_ctx *ctx, const asam_sd_guide *g, const asam_ddim *s,
                          asam_tensor *z0, asam_tensor *uncond0, const asam_null_text_opts *o,
                          float *x_T, float *null_emb, float *null_loss);
/* Guided DDIM sampling x_T -> z_0 with g (cond, guidance) and step i's unconditional embedding
 * null_emb + i * numel (emb_shape (1,77,D)). record: keep the chain on the tape with one
 * gradient-checkpointed segment per step (the full-chain attack); otherwise each step's
 * temporaries are released. verbose > 1: a timing line per step. */
asam_tensor *asam_ddim_sample_null_text(asam_ctx *ctx, const asam_sd_guide *g, const asam_ddim *s,
                                        const float *null_emb, const int64_t emb_shape[3],
                                        asam_tensor *x_T, int record, int verbose);

/* Deterministic standard normal noise: asam_randn (Philox-4x32-10 + Box-Muller) in
 * asam/util.h. */

/* ---- the bundle ------------------------------------------------------------------------- */
typedef struct {
    asam_clip_tokenizer *tokenizer;
    asam_clip_text *text;
    asam_unet *unet;
    asam_vae *vae;
} asam_sd;

/* path: a CompVis single file (.ckpt/.pth/.safetensors with model.diffusion_model.,
 * first_stage_model., cond_stage_model.transformer.text_model.) or a diffusers folder (unet/,
 * vae/, text_encoder/ with *.safetensors, tokenizer/ vocab.json + merges.txt). tokenizer_dir:
 * NULL = the folder's tokenizer/ (diffusers) or the built-in copy (single file). The weights
 * are copied (F16/BF16 -> F32) and the files closed. The bundle's UNet and VAE are frozen: under
 * bf16 (set before loading) their GEMM weights are held in bf16 as they are read
 * (asam_weight_hold_now), so the load peaks near the bf16 weights, not the fp32 ones. */
int asam_sd_load(const char *path, const char *tokenizer_dir, asam_sd **out);
void asam_sd_free(asam_sd *sd);
/* Text context (1,77,D) of a prompt. */
asam_tensor *asam_sd_encode_prompt(asam_ctx *ctx, const asam_sd *sd, const char *prompt);

/* A ControlNet file (v1.0 ControlLDM or v1.1 control_model.* keys, or diffusers names), checked
 * against the UNet, for inference: frozen like the bundle's UNet (under bf16, set before
 * loading, its GEMM weights are held in bf16 as they are read). _trainable keeps them in fp32,
 * for a ControlNet that will be trained. */
int asam_sd_controlnet_open(const char *path, const asam_unet *unet, asam_controlnet **cn);
int asam_sd_controlnet_open_trainable(const char *path, const asam_unet *unet,
                                      asam_controlnet **cn);
/* Write a PNG, or a JPEG (quality 95) when the name ends in .jpg/.jpeg; atomic. */
int asam_sd_write_image(const char *path, const asam_image *img);

/* RGB image -> (1,3,h,w) tensor, resized to w x h with PIL's bilinear filter when the size
 * differs (aspect ratio ignored), scaled to [0,1] (lo = 0: ControlNet hints) or [-1,1] (lo = -1:
 * VAE input). */
asam_tensor *asam_sd_image_to_tensor(asam_ctx *ctx, const asam_image *img, int w, int h, float lo);
/* (1,3,H,W) decoder output in [-1,1] -> RGB8: round(255 clamp((x+1)/2, 0, 1)) (diffusers). */
int asam_sd_tensor_to_image(const asam_tensor *x, asam_image *out);

#ifdef __cplusplus
}
#endif
#endif
