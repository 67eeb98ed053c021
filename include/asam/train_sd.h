/* Training the Stable Diffusion side of the miniature world (docs/world.md): the VAE
 * (`asam train-vae`) and the text-conditioned UNet with a frozen random CLIP text encoder
 * (`asam train-unet`), at small widths of SD 1.5's architecture, written as a diffusers folder
 * (OUT/vae, OUT/unet, OUT/text_encoder, OUT/tokenizer, OUT/scheduler, model_index.json) that
 * `--sd OUT` loads as it loads the real SD 1.5 folder.
 *
 * VAE loss (ldm's AutoencoderKL objective without its LPIPS and GAN terms):
 *   z = mean + exp(logvar / 2) n (the posterior sample), x' = decode(z),
 *   loss = mean |x - x'| + kl_weight * KL / (3 H W),  KL = 0.5 sum(mean^2 + var - 1 - logvar)
 * i.e. ldm's LPIPSWithDiscriminator weighting (L1 summed over pixels + 1e-6 * KL summed over
 * latents, both per image), divided by the pixel count so the learning rate means the same
 * at every image size.
 *
 * UNet loss (SD's eps-prediction): z0 = 0.18215 * posterior sample of the cached VAE moments,
 *   t ~ U{0..999}, n ~ N(0, I), z_t = sqrt(a_t) z0 + sqrt(1 - a_t) n (scaled-linear betas
 *   0.00085..0.012), loss = MSE(UNet(z_t, t, CLIP(caption)), n); the caption is "" with
 *   probability uncond_share (classifier-free guidance). CLIP stays frozen (random, official
 *   initialisation).
 *
 * Both: AdamW (betas 0.9/0.999, eps 1e-8), linear warm-up, then constant. Determinism and
 * resume as train-sam: data order (a permutation per epoch), crops, flips, timesteps, noise and
 * caption dropout are pure functions of (seed, global sample index); the state file holds the
 * weights, AdamW moments, step and the provenance of the options and inputs, so a run stopped at
 * step k and resumed ends bit-identical to an uninterrupted one (same thread count). --steps is
 * not in the provenance (a run can be extended); any other option differing refuses to resume,
 * naming it. */
#ifndef ASAM_TRAIN_SD_H
#define ASAM_TRAIN_SD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *data;  /* "sa1b:DIR" (or DIR): training images */
    const char *out;   /* diffusers folder: writes OUT/vae/{config.json, weights} */
    const char *state; /* NULL = OUT/vae.state.safetensors */
    /* architecture (AutoencoderKL): ch, channel multipliers, ResnetBlocks per level */
    int ch;             /* 32 (a multiple of 32: GroupNorm(32)) */
    int n_levels;       /* 4 (3 downsamplings: 8x, as SD) */
    int mult[8];        /* {1, 2, 2, 2} */
    int num_res_blocks; /* 1 */
    /* optimisation */
    float lr;            /* 5e-4 */
    double weight_decay; /* 0.01 */
    double kl_weight;    /* 1e-6 (ldm's kl_weight) */
    int warmup;          /* 100 */
    int batch;           /* 8 */
    int crop;            /* train on random crops of this side (0: whole images); a multiple of 8 */
    int steps;
    uint64_t seed;
    int resume, save_every, stop_after, verbose;
    int f16;       /* write OUT's weights as F16 */
    float *losses; /* NULL or room for `steps` losses */
} asam_vae_train_opts;

void asam_vae_train_opts_default(asam_vae_train_opts *o);
/* "1,2,2,2" -> mult / n_levels. 0, or -1 with the error. */
int asam_vae_train_parse_mult(int *mult, int *n_levels, const char *list);
/* The whole job: train, then rescale the latents to fit SD's 0.18215 (see train_vae.c) and
 * write OUT/vae. Returns 0, 1 when stopped by stop_after, -1 (asam_last_error()). */
int asam_train_vae(const asam_vae_train_opts *o);
/* Reconstruction PSNR (dB, 8-bit images: posterior mean -> decode -> clamp, round) of the VAE
 * in a diffusers folder (DIR/vae) over the first max_images (0 = all) images of a dataset;
 * *latent_std receives the std of the 0.18215-scaled latents (SD's are about 1). */
int asam_vae_eval(const char *dir, const char *data, int max_images, double *psnr, int *n_images,
                  double *latent_std);

typedef struct {
    const char *data;  /* "sa1b:DIR": images + captions.jsonl */
    const char *out;   /* diffusers folder holding vae/ (from train-vae); writes unet/,
                          text_encoder/, tokenizer/, scheduler/, model_index.json */
    const char *state; /* NULL = OUT/unet.state.safetensors */
    /* UNet architecture (openaimodel): model channels, multipliers, blocks, attention levels */
    int model_channels; /* 32 */
    int n_levels;       /* 3 */
    int mult[8];        /* {1, 2, 2} */
    int attn[8];        /* {1, 1, 1} */
    int num_res_blocks; /* 1 */
    /* CLIP-mini text encoder (frozen): width (= the UNet's context), layers, heads */
    int text_width, text_layers, text_heads; /* 32, 2, 4 */
    /* optimisation */
    float lr;            /* 5e-4 */
    double weight_decay; /* 0.01 */
    int warmup;          /* 100 */
    int batch;           /* 16 */
    float uncond_share;  /* 0.1: caption dropped to "" */
    int steps;
    uint64_t seed;
    int resume, save_every, stop_after, verbose;
    int f16;
    float *losses;
} asam_unet_train_opts;

void asam_unet_train_opts_default(asam_unet_train_opts *o);
int asam_train_unet(const asam_unet_train_opts *o);

#ifdef __cplusplus
}
#endif
#endif
