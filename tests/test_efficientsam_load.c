/* EfficientSAM loading: the configuration read from names and shapes (tiny fixture, a random
 * full-size ViT-Ti and ViT-S written in the official {"model": state_dict} layout and as
 * safetensors), save/reload round trips, the family test, and one clear error line naming the
 * file and the tensor for a SAM checkpoint, a missing tensor, a wrong shape, a truncated file. */
#include "test_util.h"
#include "test_sam_common.h"
#include "test_esam_common.h"

/* Write m's tensors to path as safetensors, leaving out `drop` and reshaping `reshape` to
 * (numel, 1). */
static int write_altered(const asam_esam *m, const char *path, const char *drop,
                         const char *reshape) {
    asam_st_entry *e = calloc((size_t)m->n, sizeof *e);
    size_t k = 0;
    for (int i = 0; i < m->n; i++) {
        if (drop && !strcmp(m->names[i], drop)) continue;
        e[k].name = m->names[i];
        e[k].dtype = ASAM_DT_F32;
        e[k].ndim = m->all[i]->ndim;
        for (int d = 0; d < e[k].ndim; d++) e[k].shape[d] = m->all[i]->shape[d];
        if (reshape && !strcmp(m->names[i], reshape)) {
            e[k].ndim = 2;
            e[k].shape[0] = m->all[i]->numel;
            e[k].shape[1] = 1;
        }
        e[k++].data = m->all[i]->data;
    }
    int rc = asam_safetensors_write(path, e, k, NULL, 0);
    free(e);
    return rc;
}

static int same_weights(const asam_esam *a, const asam_esam *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->names[i], b->names[i]) || a->all[i]->numel != b->all[i]->numel ||
            memcmp(a->all[i]->data, b->all[i]->data, sizeof(float) * (size_t)a->all[i]->numel))
            return 0;
    return 1;
}

static void expect_error(const char *path, int heads, const char *what, const char *needle) {
    asam_esam *m = NULL;
    int rc = asam_esam_load(path, heads, &m);
    const char *err = asam_last_error();
    CHECK(rc == -1 && m == NULL, "%s: load succeeded", what);
    CHECK(err && strstr(err, path) && strstr(err, needle) && !strchr(err, '\n'),
          "%s: error line '%s' should name %s and '%s'", what, err ? err : "", path, needle);
    if (rc == -1) printf("ok   %s: %s\n", what, err);
    asam_esam_free(m);
}

static void fullsize(const char *variant, int C, int heads) {
    asam_esam_config cfg, got;
    CHECK(asam_esam_config_preset(variant, &cfg) == 0, "preset %s", variant);
    asam_esam *m = NULL, *r = NULL;
    CHECK(asam_esam_init_random(&cfg, 7, &m) == 0, "random %s: %s", variant, asam_last_error());
    if (!m) return;
    int64_t tok = asam_esam_iou_token(m)->numel + asam_esam_mask_tokens(m)->numel;
    CHECK(tok == 1280, "%s: %lld tuned token values, expected 1280", variant, (long long)tok);
    char path[256];
    snprintf(path, sizeof path, "esam_test_%s.pt", variant);
    CHECK(asam_esam_save(m, path) == 0, "save %s: %s", path, asam_last_error());
    /* the official layout: the reader unwraps {"model": ...} into the plain names */
    CHECK(asam_esam_config_from_file(path, 0, &got) == 0, "config %s: %s", path, asam_last_error());
    CHECK(got.embed_dim == C && got.num_heads == heads && got.depth == 12 && got.dim == 256 &&
              got.dec_mlp_dim == 2048 && got.up_dims[0] == 64 && got.up_dims[1] == 32 &&
              got.iou_hidden == 256 && got.pos_grid == 14 && !strcmp(got.variant, variant),
          "%s: config from shapes (C %d heads %d variant %s)", variant, got.embed_dim,
          got.num_heads, got.variant);
    CHECK(!strcmp(asam_model_family_of_file(path) ? asam_model_family_of_file(path) : "",
                  "efficientsam"),
          "%s: family", path);
    CHECK(asam_esam_load(path, 0, &r) == 0 && same_weights(m, r), "%s: reload identical", path);
    if (r) {
        /* one encoder block and the decoder at full size (3 / 6 heads, D = 256) */
        asam_ctx *ctx = asam_ctx_new(0);
        asam_ctx_set_grad(ctx, 0);
        asam_tensor *t = asam_full(ctx, ASAM_SHAPE(1, 4096, C), 0.1f);
        for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)((i * 37) % 101) / 101.0f;
        asam_tensor *y = esam_block_forward(ctx, &r->enc.blocks[0], t);
        CHECK(y && y->shape[1] == 4096 && y->shape[2] == C && asam_ctx_ok(ctx), "%s block",
              variant);
        asam_tensor *emb = asam_full(ctx, ASAM_SHAPE(1, 256, 64, 64), 0.0f);
        for (int64_t i = 0; i < emb->numel; i++) emb->data[i] = (float)((i * 13) % 29) / 29.0f;
        float xy[4] = {10, 20, 300, 200}, lab[2] = {2, 3}, c6[12], l6[6];
        asam_esam_prepare_points(1, 2, xy, lab, 480, 640, c6, l6);
        asam_tensor *low, *iou;
        CHECK(asam_esam_decode(ctx, r, emb, asam_esam_prompt_encode(ctx, r, 1, c6, l6), 1, &low,
                               &iou, NULL) == 0 &&
                  low->shape[1] == 3 && low->shape[2] == 256 && iou->shape[1] == 3,
              "%s decoder at full width: %s", variant, asam_ctx_error(ctx));
        if (asam_ctx_ok(ctx)) printf("ok   %s: config, reload, block and decoder\n", variant);
        asam_ctx_free(ctx);
    }
    /* safetensors keeps the head count in its metadata */
    snprintf(path, sizeof path, "esam_test_%s.safetensors", variant);
    CHECK(asam_esam_save(m, path) == 0 && asam_esam_config_from_file(path, 0, &got) == 0 &&
              got.num_heads == heads,
          "%s safetensors", variant);
    asam_esam_free(r);
    asam_esam_free(m);
    remove(path);
    snprintf(path, sizeof path, "esam_test_%s.pt", variant);
    remove(path);
}

int main(void) {
    asam_set_threads(2);
    asam_esam *m = esam_load_tiny();
    char tiny[4096];
    test_data_file("efficientsam_tiny/model.safetensors", tiny, sizeof tiny);
    CHECK(!strcmp(asam_model_family_of_file(tiny), "efficientsam"), "tiny family");

    /* round trip of the tiny model through both formats; the safetensors records the heads */
    asam_esam *r = NULL;
    CHECK(asam_esam_save(m, "esam_test_tiny.pth") == 0, "save: %s", asam_last_error());
    CHECK(asam_esam_load("esam_test_tiny.pth", 2, &r) == 0 && same_weights(m, r),
          "tiny .pth round trip");
    asam_esam_free(r);
    r = NULL;
    CHECK(asam_esam_save(m, "esam_test_tiny.safetensors") == 0, "save st");
    CHECK(asam_esam_load("esam_test_tiny.safetensors", 0, &r) == 0 && r->cfg.num_heads == 2 &&
              same_weights(m, r),
          "tiny safetensors round trip (heads from metadata)");
    asam_esam_free(r);

    /* errors: one line naming the file and the problem */
    char sam[4096];
    if (test_data_file("sam_tiny/model.pth", sam, sizeof sam) == 0) {
        CHECK(!strcmp(asam_model_family_of_file(sam), "sam"), "SAM family");
        expect_error(sam, 0, "SAM checkpoint", "SAM checkpoint");
    }
    write_altered(m, "esam_test_missing.safetensors", "mask_decoder.mask_tokens.weight", NULL);
    expect_error("esam_test_missing.safetensors", 2, "missing tensor",
                 "missing tensor 'mask_decoder.mask_tokens.weight'");
    write_altered(m, "esam_test_shape.safetensors", NULL,
                  "mask_decoder.transformer.layers.1.norm2.bias");
    expect_error("esam_test_shape.safetensors", 2, "wrong shape",
                 "'mask_decoder.transformer.layers.1.norm2.bias' has shape (64, 1)");
    write_altered(m, "esam_test_shape2.safetensors", NULL, "image_encoder.pos_embed");
    expect_error("esam_test_shape2.safetensors", 2, "wrong pos_embed shape",
                 "'image_encoder.pos_embed' has shape");
    expect_error("esam_test_tiny.safetensors", 3, "heads not dividing the width",
                 "cannot tell the encoder's head count");
    /* truncated file */
    FILE *f = fopen("esam_test_tiny.pth", "rb");
    FILE *g = fopen("esam_test_trunc.pth", "wb");
    char buf[4096];
    size_t k, total = 0;
    while (f && g && (k = fread(buf, 1, sizeof buf, f)) > 0 && total < 1000000) {
        fwrite(buf, 1, k, g);
        total += k;
    }
    if (f) fclose(f);
    if (g) fclose(g);
    expect_error("esam_test_trunc.pth", 2, "truncated file", "esam_test_trunc.pth");
    const char *tmp[] = {"esam_test_tiny.pth",
                         "esam_test_tiny.safetensors",
                         "esam_test_missing.safetensors",
                         "esam_test_shape.safetensors",
                         "esam_test_shape2.safetensors",
                         "esam_test_trunc.pth"};
    for (int i = 0; i < 6; i++) remove(tmp[i]);
    asam_esam_free(m);

    fullsize("vit_t", 192, 3);
    fullsize("vit_s", 384, 6);
    return test_finish("test_efficientsam_load");
}
