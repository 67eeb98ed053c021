/* SAM configuration and loading: ViT-L / ViT-H detected from shape-only (sparse) synthetic
 * checkpoints in the official layout; clear errors for another model's checkpoint and for a
 * mis-shaped tensor; safetensors and .pth give the same model; a full-size random ViT-B in
 * the official .pth layout loads and segments a box at 1024. */
#include "test_util.h"
#include "test_sam_common.h"

#include "asam/util.h"

typedef struct {
    char name[160];
    int ndim;
    int64_t shape[4];
} key;

static int add_key(key *k, int n, int ndim, const int64_t *shape, const char *fmt, int i,
                   const char *leaf) {
    snprintf(k[n].name, sizeof k[n].name, fmt, i, leaf);
    k[n].ndim = ndim;
    for (int d = 0; d < ndim; d++) k[n].shape[d] = shape[d];
    return n + 1;
}

/* Encoder keys of an official ViT (C, depth, heads (head_dim 64 for B/L, 80 for H), global blocks)
 * plus every prompt-encoder / decoder key copied from the tiny model (identical in all variants),
 * written as a safetensors whose data section is a hole (sparse file): real shapes, no bytes on
 * disk. */
static int write_shape_only(const char *path, int C, int depth, int heads, const int *glob, int ng,
                            asam_checkpoint *tiny) {
    static key k[1024];
    int n = 0;
    const char *b = "image_encoder.blocks.%d.%s";
    n = add_key(k, n, ASAM_SHAPE(C, 3, 16, 16), "image_encoder.patch_embed.proj.weight%.0d%s", 0,
                "");
    n = add_key(k, n, ASAM_SHAPE(C), "image_encoder.patch_embed.proj.bias%.0d%s", 0, "");
    n = add_key(k, n, ASAM_SHAPE(1, 64, 64, C), "image_encoder.pos_embed%.0d%s", 0, "");
    for (int i = 0; i < depth; i++) {
        int g = 0;
        for (int j = 0; j < ng; j++) g |= glob[j] == i;
        int64_t rows = g ? 127 : 27;
        n = add_key(k, n, ASAM_SHAPE(C), b, i, "norm1.weight");
        n = add_key(k, n, ASAM_SHAPE(C), b, i, "norm1.bias");
        n = add_key(k, n, ASAM_SHAPE(3 * C, C), b, i, "attn.qkv.weight");
        n = add_key(k, n, ASAM_SHAPE(3 * C), b, i, "attn.qkv.bias");
        n = add_key(k, n, ASAM_SHAPE(C, C), b, i, "attn.proj.weight");
        n = add_key(k, n, ASAM_SHAPE(C), b, i, "attn.proj.bias");
        n = add_key(k, n, ASAM_SHAPE(rows, C / heads), b, i, "attn.rel_pos_h");
        n = add_key(k, n, ASAM_SHAPE(rows, C / heads), b, i, "attn.rel_pos_w");
        n = add_key(k, n, ASAM_SHAPE(C), b, i, "norm2.weight");
        n = add_key(k, n, ASAM_SHAPE(C), b, i, "norm2.bias");
        n = add_key(k, n, ASAM_SHAPE(4 * C, C), b, i, "mlp.lin1.weight");
        n = add_key(k, n, ASAM_SHAPE(4 * C), b, i, "mlp.lin1.bias");
        n = add_key(k, n, ASAM_SHAPE(C, 4 * C), b, i, "mlp.lin2.weight");
        n = add_key(k, n, ASAM_SHAPE(C), b, i, "mlp.lin2.bias");
    }
    n = add_key(k, n, ASAM_SHAPE(256, C, 1, 1), "image_encoder.neck.0.weight%.0d%s", 0, "");
    n = add_key(k, n, ASAM_SHAPE(256), "image_encoder.neck.1.weight%.0d%s", 0, "");
    n = add_key(k, n, ASAM_SHAPE(256), "image_encoder.neck.1.bias%.0d%s", 0, "");
    n = add_key(k, n, ASAM_SHAPE(256, 256, 3, 3), "image_encoder.neck.2.weight%.0d%s", 0, "");
    n = add_key(k, n, ASAM_SHAPE(256), "image_encoder.neck.3.weight%.0d%s", 0, "");
    n = add_key(k, n, ASAM_SHAPE(256), "image_encoder.neck.3.bias%.0d%s", 0, "");
    for (size_t i = 0; i < asam_checkpoint_count(tiny); i++) {
        const asam_ckpt_tensor *t = asam_checkpoint_get(tiny, i);
        if (!strncmp(t->name, "image_encoder.", 14)) continue;
        n = add_key(k, n, t->ndim, t->shape, "%.0d%s", 0, t->name);
    }
    /* no data: the library writer leaves a hole (sparse file), real shapes, no bytes on disk */
    static asam_st_entry e[1024];
    for (int i = 0; i < n; i++) {
        e[i] = (asam_st_entry){.name = k[i].name, .dtype = ASAM_DT_F32, .ndim = k[i].ndim};
        for (int d = 0; d < k[i].ndim; d++) e[i].shape[d] = k[i].shape[d];
    }
    return asam_safetensors_write(path, e, (size_t)n, NULL, 0) == 0 ? n : -1;
}

static void check_variant(asam_checkpoint *tiny, const char *variant, int C, int depth, int heads,
                          const int *glob) {
    char path[256];
    snprintf(path, sizeof path, "sam_shape_only_%s.safetensors", variant);
    int n = write_shape_only(path, C, depth, heads, glob, 4, tiny);
    CHECK(n > 0, "writing %s", path);
    asam_sam_config cfg;
    int rc = asam_sam_config_from_file(path, &cfg);
    CHECK(rc == 0, "%s: %s", variant, asam_last_error());
    if (rc == 0) {
        CHECK(!strcmp(cfg.variant, variant), "detected '%s', expected %s", cfg.variant, variant);
        CHECK(cfg.embed_dim == C && cfg.depth == depth && cfg.num_heads == heads &&
                  cfg.head_dim == C / heads && cfg.mlp_dim == 4 * C && cfg.window == 14 &&
                  cfg.n_global == 4,
              "%s: C %d depth %d heads %d window %d globals %d", variant, cfg.embed_dim, cfg.depth,
              cfg.num_heads, cfg.window, cfg.n_global);
        for (int i = 0; i < 4 && i < cfg.n_global; i++)
            CHECK(cfg.global_idx[i] == glob[i], "%s: global block %d is %d, expected %d", variant,
                  i, cfg.global_idx[i], glob[i]);
        asam_sam_config pre;
        asam_sam_config_preset(variant, &pre);
        CHECK(memcmp(pre.global_idx, cfg.global_idx, sizeof pre.global_idx) == 0,
              "%s: preset differs", variant);
        printf(
            "ok   %s detected from shapes (%d keys): C=%d depth=%d heads=%d global=%d,%d,%d,%d\n",
            variant, n, cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.global_idx[0],
            cfg.global_idx[1], cfg.global_idx[2], cfg.global_idx[3]);
    }
    remove(path);
}

/* ViT-B/L/H detected from shapes; the tiny model's own configuration. */
static void case_variants(asam_checkpoint *tiny, const char *tiny_path) {
    check_variant(tiny, "vit_b", 768, 12, 12, (const int[]){2, 5, 8, 11});
    check_variant(tiny, "vit_l", 1024, 24, 16, (const int[]){5, 11, 17, 23});
    check_variant(tiny, "vit_h", 1280, 32, 16, (const int[]){7, 15, 23, 31});
    asam_sam_config tc;
    CHECK(asam_sam_config_from_file(tiny_path, &tc) == 0 && tc.embed_dim == 64 && tc.depth == 3 &&
              tc.num_heads == 2 && tc.n_global == 1 && tc.global_idx[0] == 1 && tc.window == 14,
          "tiny config");
}

/* Another model's checkpoint: one clear line naming file and key. */
static void case_other_model(void) {
    char sd_path[4096];
    if (test_data_file("sd_tiny/model.ckpt", sd_path, sizeof sd_path) == 0) {
        asam_sam *m = NULL;
        CHECK(asam_sam_load(sd_path, &m) != 0 && !m, "SD checkpoint loaded as SAM");
        const char *e = asam_last_error();
        CHECK(strstr(e, sd_path) && strstr(e, "image_encoder.patch_embed.proj.weight") &&
                  !strchr(e, '\n'),
              "error: %s", e);
        printf("ok   SD checkpoint rejected: %s\n", e);
    }
}

/* A safetensors copy of the tiny model (ent: its tensors as F32) loads as the .pth does, and
 * a re-saved .pth too. */
static void case_formats(asam_checkpoint *tiny, const char *tiny_path, asam_st_entry *ent) {
    size_t n = asam_checkpoint_count(tiny);
    for (size_t i = 0; i < n; i++) {
        const asam_ckpt_tensor *t = asam_checkpoint_get(tiny, i);
        float *d = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        asam_ckpt_read_f32(tiny, t, d);
        ent[i].name = t->name;
        ent[i].dtype = ASAM_DT_F32;
        ent[i].ndim = t->ndim;
        memcpy(ent[i].shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        ent[i].data = d;
    }
    CHECK(asam_safetensors_write("sam_tiny_copy.safetensors", ent, n, NULL, 0) == 0, "write: %s",
          asam_last_error());
    asam_sam *a = NULL, *b = NULL;
    CHECK(asam_sam_load(tiny_path, &a) == 0, "load pth: %s", asam_last_error());
    CHECK(asam_sam_load("sam_tiny_copy.safetensors", &b) == 0, "load safetensors: %s",
          asam_last_error());
    if (a && b) {
        CHECK(memcmp(a->dec.mask_tokens->data, b->dec.mask_tokens->data, 4 * 256 * 4) == 0 &&
                  memcmp(a->enc.pos_embed->data, b->enc.pos_embed->data, 64 * 64 * 64 * 4) == 0,
              "pth and safetensors differ");
        /* round trip through asam_sam_save (.pth) */
        CHECK(asam_sam_save(a, "sam_tiny_resave.pth") == 0, "save: %s", asam_last_error());
        asam_sam *c = NULL;
        CHECK(asam_sam_load("sam_tiny_resave.pth", &c) == 0, "reload: %s", asam_last_error());
        if (c)
            CHECK(memcmp(a->enc.blocks[2].lin2_w->data, c->enc.blocks[2].lin2_w->data,
                         (size_t)a->enc.blocks[2].lin2_w->numel * 4) == 0,
                  "resaved model differs");
        asam_sam_free(c);
        remove("sam_tiny_resave.pth");
        printf("ok   .pth / safetensors / re-saved .pth load identically\n");
    }
    asam_sam_free(a);
    asam_sam_free(b);
}

/* One tensor mis-shaped: refused, naming the tensor and both shapes. */
static void case_misshaped(asam_st_entry *ent, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ent[i].name, "mask_decoder.iou_token.weight")) {
            ent[i].ndim = 2;
            ent[i].shape[0] = 2;
            ent[i].shape[1] = 128;
        }
    CHECK(asam_safetensors_write("sam_tiny_bad.safetensors", ent, n, NULL, 0) == 0, "write bad");
    asam_sam *bad = NULL;
    CHECK(asam_sam_load("sam_tiny_bad.safetensors", &bad) != 0 && !bad, "mis-shaped model loaded");
    CHECK(strstr(asam_last_error(), "mask_decoder.iou_token.weight") &&
              strstr(asam_last_error(), "(2, 128)") && strstr(asam_last_error(), "(1, 256)"),
          "error: %s", asam_last_error());
    printf("ok   mis-shaped tensor rejected: %s\n", asam_last_error());
    remove("sam_tiny_copy.safetensors");
    remove("sam_tiny_bad.safetensors");
}

/* A full-size random ViT-B in the official .pth layout: saves, loads, segments one box. */
static void case_full_size_vit_b(void) {
    asam_sam_config cb;
    asam_sam_config_preset("vit_b", &cb);
    asam_sam *rb = NULL;
    CHECK(asam_sam_init_random(&cb, 42, &rb) == 0, "random vit_b");
    double t0 = asam_now_s();
    const char *big = "sam_vit_b_random.pth";
    CHECK(asam_sam_save(rb, big) == 0, "save vit_b: %s", asam_last_error());
    asam_sam_free(rb);
    double t1 = asam_now_s();
    asam_sam *vb = NULL;
    CHECK(asam_sam_load(big, &vb) == 0, "load vit_b: %s", asam_last_error());
    double t2 = asam_now_s();
    if (vb) {
        CHECK(!strcmp(vb->cfg.variant, "vit_b") && vb->cfg.n_global == 4 &&
                  vb->cfg.global_idx[0] == 2,
              "vit_b config");
        asam_image img = {0};
        asam_image_alloc(&img, 700, 500, 3);
        for (int y = 0; y < 500; y++)
            for (int x = 0; x < 700; x++) {
                int in = (x - 350) * (x - 350) + (y - 250) * (y - 250) < 120 * 120;
                img.data[(y * 700 + x) * 3 + 0] = in ? 220 : (uint8_t)(x / 3);
                img.data[(y * 700 + x) * 3 + 1] = in ? 40 : (uint8_t)(y / 2);
                img.data[(y * 700 + x) * 3 + 2] = (uint8_t)(in ? 60 : 128);
            }
        asam_sam_predictor p;
        asam_sam_predictor_init(&p, vb);
        CHECK(asam_sam_predictor_set_image(&p, &img) == 0, "set_image: %s", asam_last_error());
        double t3 = asam_now_s();
        float box[4] = {220, 120, 480, 380};
        asam_sam_query q = {.batch = 1, .boxes = box};
        asam_sam_result r;
        CHECK(asam_sam_predictor_predict(&p, &q, 1, &r) == 0, "predict: %s", asam_last_error());
        double t4 = asam_now_s();
        int finite = 1;
        for (int64_t i = 0; i < (int64_t)r.batch * r.n_masks * r.h * r.w; i++)
            finite &= isfinite(r.mask_logits[i]);
        for (int i = 0; i < 3; i++) finite &= isfinite(r.iou[i]);
        CHECK(r.n_masks == 3 && r.h == 500 && r.w == 700 && finite, "vit_b result");
        double ms = 0;
        for (int64_t i = 0; i < 256 * 256; i++) ms += fabs(r.low_res[i]);
        CHECK(ms > 0, "vit_b low-res logits all zero");
        printf("ok   random ViT-B (.pth): save %.1fs, load %.1fs, encode %.1fs, "
               "decode %.2fs, iou %.3f %.3f %.3f\n",
               t1 - t0, t2 - t1, t3 - t2, t4 - t3, r.iou[0], r.iou[1], r.iou[2]);
        asam_sam_result_free(&r);
        asam_sam_predictor_free(&p);
        asam_image_free(&img);
    }
    asam_sam_free(vb);
    remove(big);
}

int main(void) {
    asam_set_threads(2);
    char tiny_path[4096];
    if (test_data_file("sam_tiny/model.pth", tiny_path, sizeof tiny_path) != 0)
        TEST_SKIP("sam_tiny/model.pth not found");
    asam_checkpoint *tiny;
    CHECK(asam_checkpoint_open(tiny_path, &tiny) == 0, "open tiny: %s", asam_last_error());
    case_variants(tiny, tiny_path);
    case_other_model();
    size_t n = asam_checkpoint_count(tiny);
    asam_st_entry *ent = calloc(n, sizeof *ent);
    case_formats(tiny, tiny_path, ent);
    case_misshaped(ent, n);
    for (size_t i = 0; i < n; i++) free((void *)ent[i].data);
    free(ent);
    asam_checkpoint_close(tiny);
    if (getenv("ASAM_SKIP_SLOW")) {
        TEST_SKIP_PART("full-size ViT-B part (ASAM_SKIP_SLOW)");
        return test_finish("test_sam_config");
    }
    case_full_size_vit_b();
    return test_finish("test_sam_config");
}
