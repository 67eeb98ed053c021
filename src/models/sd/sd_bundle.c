/* The Stable Diffusion bundle: tokenizer + CLIP text encoder + UNet + VAE from a CompVis single
 * file or a diffusers folder. */
#include "asam/engine.h"
#include "asam/checkpoint.h"

#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/sd.h"
#include "models/sd/sd_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

void asam_sd_free(asam_sd *sd) {
    if (!sd) return;
    asam_clip_tokenizer_free(sd->tokenizer);
    asam_clip_text_free(sd->text);
    asam_unet_free(sd->unet);
    asam_vae_free(sd->vae);
    free(sd);
}

/* First existing file DIR/SUB/NAME among the candidates; -1 + error naming the first. */
static int find_weights(const char *dir, const char *sub, const char *const *names, char *out,
                        size_t n) {
    for (int i = 0; names[i]; i++) {
        snprintf(out, n, "%s/%s/%s", dir, sub, names[i]);
        if (asam_file_exists(out)) return 0;
    }
    snprintf(out, n, "%s/%s/%s", dir, sub, names[0]);
    return asam_error("%s: not found (diffusers folder without %s weights)", out, sub);
}

/* num_attention_heads of text_encoder/config.json, 0 when absent. */
static int text_heads_from_config(const char *dir) {
    char p[4096], *data = NULL;
    size_t n = 0;
    snprintf(p, sizeof p, "%s/text_encoder/config.json", dir);
    if (!asam_file_exists(p) || asam_read_file(p, &data, &n)) return 0;
    cJSON *root = cJSON_ParseWithLength(data, n);
    free(data);
    const cJSON *h = cJSON_GetObjectItem(root, "num_attention_heads");
    int heads = cJSON_IsNumber(h) ? h->valueint : 0;
    cJSON_Delete(root);
    return heads;
}

/* Open path, run load(ck) and close the file again (the models copy their weights). */
#define WITH_CK(path, call)                                                                        \
    do {                                                                                           \
        asam_checkpoint *ck;                                                                       \
        if (asam_checkpoint_open(path, &ck)) return -1;                                            \
        int rc_ = (call);                                                                          \
        asam_checkpoint_close(ck);                                                                 \
        if (rc_) return -1;                                                                        \
    } while (0)

static int load_diffusers(asam_sd *sd, const char *dir) {
    static const char *const unet_names[] = {"diffusion_pytorch_model.safetensors",
                                             "diffusion_pytorch_model.fp16.safetensors",
                                             "diffusion_pytorch_model.bin", NULL};
    static const char *const te_names[] = {"model.safetensors", "model.fp16.safetensors",
                                           "pytorch_model.bin", NULL};
    char p[4096];
    if (find_weights(dir, "unet", unet_names, p, sizeof p)) return -1;
    WITH_CK(p, sd_unet_load_frozen(ck, "", 1, &sd->unet));
    if (find_weights(dir, "vae", unet_names, p, sizeof p)) return -1;
    WITH_CK(p, sd_vae_load_frozen(ck, "", 1, &sd->vae));
    if (find_weights(dir, "text_encoder", te_names, p, sizeof p)) return -1;
    WITH_CK(p,
            asam_clip_text_load_frozen(ck, "text_model.", text_heads_from_config(dir), &sd->text));
    return 0;
}

static int load_single_ck(asam_sd *sd, asam_checkpoint *ck, const char *path) {
    if (!asam_checkpoint_find(ck, "model.diffusion_model.input_blocks.0.0.weight"))
        return asam_error("%s: not a Stable Diffusion checkpoint (no model.diffusion_model.* UNet)",
                          path);
    if (sd_unet_load_frozen(ck, "model.diffusion_model.", 1, &sd->unet) ||
        sd_vae_load_frozen(ck, "first_stage_model.", 1, &sd->vae))
        return -1;
    /* Older transformers versions saved CLIPTextModel without the text_model. level. */
    const char *prefix = "cond_stage_model.transformer.text_model.";
    if (!asam_checkpoint_find(
            ck, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight") &&
        asam_checkpoint_find(ck, "cond_stage_model.transformer.embeddings.token_embedding.weight"))
        prefix = "cond_stage_model.transformer.";
    return asam_clip_text_load_frozen(ck, prefix, 0, &sd->text);
}

static int load_single(asam_sd *sd, const char *path) {
    WITH_CK(path, load_single_ck(sd, ck, path));
    return 0;
}

int asam_sd_load(const char *path, const char *tokenizer_dir, asam_sd **out) {
    *out = NULL;
    asam_sd *sd = calloc(1, sizeof *sd);
    if (!sd) return asam_error("out of memory");
    int diffusers = is_dir(path);
    if (!diffusers && !asam_file_exists(path)) {
        free(sd);
        return asam_error("%s: no such file or folder", path);
    }
    /* Tokenizer first: it is the cheapest thing to get wrong. */
    char tdir[4096];
    if (tokenizer_dir)
        snprintf(tdir, sizeof tdir, "%s", tokenizer_dir);
    else if (diffusers)
        snprintf(tdir, sizeof tdir, "%s/tokenizer", path);
    else
        snprintf(tdir, sizeof tdir, "%s", asam_clip_default_dir());
    if (asam_clip_tokenizer_load_dir(tdir, &sd->tokenizer) ||
        (diffusers ? load_diffusers(sd, path) : load_single(sd, path))) {
        asam_sd_free(sd);
        return -1;
    }
    int cdim = asam_unet_context_dim(sd->unet), tw = asam_clip_text_width(sd->text);
    if (cdim != tw) {
        asam_sd_free(sd);
        return asam_error("%s: the UNet's context width %d differs from the text encoder's %d",
                          path, cdim, tw);
    }
    *out = sd;
    return 0;
}

asam_tensor *asam_sd_encode_prompt(asam_ctx *ctx, const asam_sd *sd, const char *prompt) {
    int64_t ids[ASAM_CLIP_CONTEXT];
    if (asam_clip_tokenize(sd->tokenizer, prompt ? prompt : "", ids) < 0)
        return asam_ctx_fail(ctx, "%s", asam_last_error());
    return asam_clip_text_forward(ctx, sd->text, ids, 1, NULL);
}

asam_tensor *asam_sd_image_to_tensor(asam_ctx *ctx, const asam_image *img, int w, int h, float lo) {
    if (img->c != 3) return asam_ctx_fail(ctx, "image has %d channels, expected RGB", img->c);
    asam_image rs = {0};
    const asam_image *src = img;
    if (img->w != w || img->h != h) {
        if (asam_image_resize_pil_bilinear(img, w, h, &rs))
            return asam_ctx_fail(ctx, "%s", asam_last_error());
        src = &rs;
    }
    asam_tensor *t = asam_new(ctx, ASAM_SHAPE(1, 3, h, w));
    if (t) {
        const float scale = (1.0f - lo) / 255.0f;
        for (int c = 0; c < 3; c++)
            for (int64_t i = 0; i < (int64_t)w * h; i++)
                t->data[c * (int64_t)w * h + i] = src->data[i * 3 + c] * scale + lo;
    }
    asam_image_free(&rs);
    return t;
}

int asam_sd_tensor_to_image(const asam_tensor *x, asam_image *out) {
    if (!x || x->ndim != 4 || x->shape[0] != 1 || x->shape[1] != 3)
        return asam_error("expected a (1,3,H,W) image tensor");
    const int h = (int)x->shape[2], w = (int)x->shape[3];
    if (asam_image_alloc(out, w, h, 3)) return -1;
    for (int c = 0; c < 3; c++)
        for (int64_t i = 0; i < (int64_t)w * h; i++) {
            float v = (x->data[c * (int64_t)w * h + i] + 1.0f) * 0.5f;
            v = v < 0 ? 0 : v > 1 ? 1 : v; /* NaN passes the clamp and becomes 0 below */
            out->data[i * 3 + c] = (uint8_t)(v == v ? v * 255.0f + 0.5f : 0);
        }
    return 0;
}

/* asam_sd_controlnet_open(_trainable): frozen, the weights are held in bf16 as read (bf16). */
static int controlnet_open(const char *path, const asam_unet *unet, int frozen,
                           asam_controlnet **cn) {
    *cn = NULL;
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) return -1;
    const char *prefix =
        asam_checkpoint_find(ck, "control_model.input_hint_block.0.weight") ? "control_model." : "";
    int rc = sd_controlnet_load_frozen(ck, prefix, frozen, cn);
    asam_checkpoint_close(ck);
    if (rc) return -1;
    if (asam_controlnet_check(*cn, unet)) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", asam_last_error());
        asam_controlnet_free(*cn);
        *cn = NULL;
        if (strstr(msg, path)) return asam_error("%s", msg);
        return asam_error("%s: %s", path, msg);
    }
    return 0;
}

int asam_sd_controlnet_open(const char *path, const asam_unet *unet, asam_controlnet **cn) {
    return controlnet_open(path, unet, 1, cn);
}

int asam_sd_controlnet_open_trainable(const char *path, const asam_unet *unet,
                                      asam_controlnet **cn) {
    return controlnet_open(path, unet, 0, cn);
}

int asam_sd_write_image(const char *path, const asam_image *img) {
    const char *dot = strrchr(path, '.');
    if (dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")))
        return asam_image_write_jpeg(path, img, 95);
    return asam_image_write_png(path, img);
}
