/* Loading the SD image models from every layout: the CompVis .ckpt (torch zip with
 * {"state_dict"}) and .safetensors, the diffusers unet/ and vae/ files, a ControlNet v1.1
 * control.pth, and random checkpoints of other sizes in CompVis and diffusers naming. Also the
 * CompVis -> diffusers name rules against the official conversion's key map, and the errors
 * for a wrong prefix and a ControlNet that does not match its UNet. */
#include "asam/sd_synth.h"
#include "sd_test_util.h"

#include "models/sd/sd_internal.h"
#include "models/sd/sd_names.h"

/* Every line of diffusers_key_map.tsv: CompVis key -> (file, diffusers key). */
static void check_name_rules(void) {
    char path[4096];
    if (test_data_file("sd_tiny/diffusers_key_map.tsv", path, sizeof path) != 0) {
        printf("SKIP name rules: diffusers_key_map.tsv not found\n");
        return;
    }
    FILE *f = fopen(path, "r");
    char line[1024];
    int n_unet = 0, n_vae = 0, bad = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char *cv = strtok(line, "\t"), *file = strtok(NULL, "\t"), *dk = strtok(NULL, "\t");
        if (!cv || !file || !dk) continue;
        char got[512];
        int rc;
        if (strcmp(file, "unet") == 0) {
            rc = sd_unet_name_to_diffusers(cv + strlen("model.diffusion_model."), 2, got,
                                           sizeof got);
            n_unet++;
        } else if (strcmp(file, "vae") == 0) {
            rc = sd_vae_name_to_diffusers(cv + strlen("first_stage_model."), 4, 0, got, sizeof got);
            n_vae++;
        } else {
            continue;
        }
        if (rc != 0 || strcmp(got, dk) != 0) {
            if (bad++ < 10) CHECK(0, "%s -> %s, expected %s", cv, rc ? "(none)" : got, dk);
        }
    }
    if (f) fclose(f);
    CHECK(bad == 0, "%d name(s) mapped wrongly", bad);
    CHECK(n_unet == 684 && n_vae == 244, "%d unet / %d vae lines", n_unet, n_vae);
    if (!bad)
        printf("ok   %d UNet and %d VAE names map to diffusers as the official conversion\n",
               n_unet, n_vae);
    /* old diffusers VAE attention names */
    char got[256];
    sd_vae_name_to_diffusers("decoder.mid.attn_1.proj_out.weight", 4, 1, got, sizeof got);
    CHECK(strcmp(got, "decoder.mid_block.attentions.0.proj_attn.weight") == 0, "old name %s", got);
    sd_vae_name_to_diffusers("encoder.mid.attn_1.k.bias", 4, 1, got, sizeof got);
    CHECK(strcmp(got, "encoder.mid_block.attentions.0.key.bias") == 0, "old name %s", got);
    sd_controlnet_name_to_diffusers("input_hint_block.6.weight", 2, got, sizeof got);
    CHECK(strcmp(got, "controlnet_cond_embedding.blocks.2.weight") == 0, "controlnet name %s", got);
    sd_controlnet_name_to_diffusers("zero_convs.11.0.bias", 2, got, sizeof got);
    CHECK(strcmp(got, "controlnet_down_blocks.11.bias") == 0, "controlnet name %s", got);
}

/* Two loaders hold the same tensors (names, shapes, values). */
static void same_weights(const sd_loader *a, const sd_loader *b, const char *what) {
    int ok = a->b.n == b->b.n;
    CHECK(a->b.n == b->b.n, "%s: %zu vs %zu tensors", what, a->b.n, b->b.n);
    for (size_t i = 0; ok && i < a->b.n; i++) {
        const asam_tensor *x = a->b.params[i], *y = b->b.params[i];
        if (strcmp(a->b.names[i], b->b.names[i]) || x->numel != y->numel ||
            memcmp(x->data, y->data, (size_t)x->numel * sizeof(float))) {
            CHECK(0, "%s: tensor %s differs", what, a->b.names[i]);
            ok = 0;
        }
    }
    if (ok) printf("ok   %s: %zu tensors identical\n", what, a->b.n);
}

static asam_checkpoint *try_open(const char *rel) {
    char path[4096];
    asam_checkpoint *ck = NULL;
    if (test_data_file(rel, path, sizeof path) != 0) {
        printf("SKIP %s not found (set ASAM_FIXTURES)\n", rel);
        return NULL;
    }
    if (asam_checkpoint_open(path, &ck) != 0) CHECK(0, "open %s: %s", path, asam_last_error());
    return ck;
}

/* The CompVis .safetensors copy binds the same UNet weights as the .ckpt. */
static void layout_safetensors(const asam_unet *u) {
    asam_checkpoint *st = try_open("sd_tiny/model.safetensors");
    if (st) {
        asam_unet *u2 = NULL;
        asam_vae *v2 = NULL;
        CHECK(asam_unet_load(st, "model.diffusion_model.", &u2) == 0, "%s", asam_last_error());
        CHECK(asam_vae_load(st, "first_stage_model.", &v2) == 0, "%s", asam_last_error());
        if (u2) same_weights(&u->weights, &u2->weights, "UNet .ckpt vs .safetensors");
        asam_unet_free(u2);
        asam_vae_free(v2);
        asam_checkpoint_close(st);
    }
}

/* The diffusers unet/ file binds the same weights and gives the reference eps. */
static void layout_diffusers_unet(const asam_unet *u) {
    asam_checkpoint *du = try_open("sd_tiny/diffusers/unet/diffusion_pytorch_model.safetensors");
    if (du) {
        asam_unet *u2 = NULL;
        CHECK(asam_unet_load(du, "", &u2) == 0, "%s", asam_last_error());
        if (u2) {
            same_weights(&u->weights, &u2->weights, "UNet CompVis vs diffusers unet/");
            asam_checkpoint *cs = sd_open("sd_tiny/unet_fwd.safetensors");
            asam_ctx *ctx = asam_ctx_new(0);
            asam_ctx_set_grad(ctx, 0);
            float t = 981;
            sd_check(asam_unet_forward(ctx, u2, sd_case(ctx, cs, "x"), &t,
                                       sd_case(ctx, cs, "context"), NULL, 1.0f),
                     cs, "eps_t981", 1e-4);
            asam_ctx_free(ctx);
            asam_checkpoint_close(cs);
        }
        asam_unet_free(u2);
        asam_checkpoint_close(du);
    }
}

/* The diffusers vae/ file (Linear attention) binds the same weights and decodes alike. */
static void layout_diffusers_vae(const asam_vae *v) {
    asam_checkpoint *dv = try_open("sd_tiny/diffusers/vae/diffusion_pytorch_model.safetensors");
    if (dv) {
        asam_vae *v2 = NULL;
        CHECK(asam_vae_load(dv, "", &v2) == 0, "%s", asam_last_error());
        if (v2) {
            same_weights(sd_vae_weights(v), sd_vae_weights(v2),
                         "VAE CompVis vs diffusers vae/ (Linear attention)");
            asam_checkpoint *cd = sd_open("sd_tiny/vae_decode.safetensors");
            asam_ctx *ctx = asam_ctx_new(0);
            asam_ctx_set_grad(ctx, 0);
            sd_check(asam_vae_decode(ctx, v2, sd_case(ctx, cd, "z_unscaled")), cd, "image", 1e-4);
            asam_ctx_free(ctx);
            asam_checkpoint_close(cd);
        }
        asam_vae_free(v2);
        asam_checkpoint_close(dv);
    }
}

/* control.pth: explicit prefix and auto-detected */
static void layout_control_prefixes(asam_checkpoint *cc, const asam_unet *u) {
    asam_controlnet *c1 = NULL, *c2 = NULL;
    CHECK(asam_controlnet_load(cc, "control_model.", &c1) == 0, "%s", asam_last_error());
    CHECK(asam_controlnet_load(cc, "", &c2) == 0, "%s", asam_last_error());
    if (c1 && c2) {
        asam_tensor **p1, **p2;
        const char **n1, **n2;
        size_t k1, k2;
        asam_controlnet_params(c1, &p1, &n1, &k1);
        asam_controlnet_params(c2, &p2, &n2, &k2);
        CHECK(k1 == k2 && k1 == 338, "%zu / %zu ControlNet tensors", k1, k2);
        CHECK(asam_controlnet_check(c1, u) == 0, "%s", asam_last_error());
    }
    asam_controlnet_free(c1);
    asam_controlnet_free(c2);
}

/* prefix "" on a CompVis single file finds its UNet and VAE */
static void layout_detected_prefix(asam_checkpoint *ck, const asam_unet *u, const asam_vae *v) {
    asam_unet *u3 = NULL;
    asam_vae *v3 = NULL;
    CHECK(asam_unet_load(ck, "", &u3) == 0 && asam_vae_load(ck, "", &v3) == 0, "%s",
          asam_last_error());
    if (u3 && v3) {
        same_weights(&u->weights, &u3->weights, "UNet with prefix \"\" (detected)");
        same_weights(sd_vae_weights(v), sd_vae_weights(v3), "VAE with prefix \"\" (detected)");
    }
    asam_unet_free(u3);
    asam_vae_free(v3);
}

/* errors name the file and the key */
static void layout_errors(asam_checkpoint *ck, asam_checkpoint *cc) {
    asam_unet *bad = NULL;
    CHECK(asam_unet_load(ck, "model.wrong.", &bad) != 0 && !bad, "wrong prefix accepted");
    CHECK(strstr(asam_last_error(), "model.ckpt") &&
              strstr(asam_last_error(), "input_blocks.0.0.weight"),
          "error: %s", asam_last_error());
    printf("ok   wrong prefix -> %s\n", asam_last_error());
    asam_vae *badv = NULL;
    CHECK(asam_vae_load(cc, "first_stage_model.", &badv) != 0, "VAE from a ControlNet file");
    printf("ok   VAE from control.pth -> %s\n", asam_last_error());
    asam_controlnet *badc = NULL;
    CHECK(asam_controlnet_load(ck, "model.diffusion_model.", &badc) != 0,
          "UNet taken as ControlNet");
    printf("ok   UNet as ControlNet -> %s\n", asam_last_error());
}

/* a ControlNet of another size (random weights, written here) does not fit the tiny UNet */
static void layout_other_controlnet(const asam_unet *u) {
    asam_sd_synth_unet_cfg cfg = {.in_channels = 4,
                                  .out_channels = 4,
                                  .model_channels = 64,
                                  .n_levels = 4,
                                  .num_res_blocks = 2,
                                  .mult = {1, 2, 2, 2},
                                  .attn = {1, 1, 1, 0},
                                  .context_dim = 64,
                                  .depth = 1,
                                  .hint_channels = 3};
    const char *other = "sd_load_other_control.safetensors";
    CHECK(asam_sd_synth_write(other, NULL, NULL, NULL, NULL, &cfg, "control_model.", 0, 1, 7, NULL,
                              NULL) == 0,
          "%s", asam_last_error());
    asam_checkpoint *co = NULL;
    asam_controlnet *c3 = NULL;
    if (asam_checkpoint_open(other, &co) == 0 &&
        asam_controlnet_load(co, "control_model.", &c3) == 0) {
        CHECK(asam_controlnet_check(c3, u) != 0, "mismatched ControlNet accepted");
        CHECK(strstr(asam_last_error(), "does not match"), "error: %s", asam_last_error());
        printf("ok   mismatched ControlNet -> %s\n", asam_last_error());
        /* and the forward refuses its residuals */
        asam_ctx *ctx = asam_ctx_new(0);
        asam_ctx_set_grad(ctx, 0);
        asam_tensor *x = asam_zeros(ctx, ASAM_SHAPE(1, 4, 16, 16));
        asam_tensor *c = asam_zeros(ctx, ASAM_SHAPE(1, 77, 64));
        asam_tensor *hint = asam_zeros(ctx, ASAM_SHAPE(1, 3, 128, 128));
        asam_tensor *res[13];
        float t = 1;
        CHECK(asam_controlnet_forward(ctx, c3, x, &t, c, hint, res) == 0, "%s",
              asam_ctx_error(ctx));
        CHECK(asam_unet_forward(ctx, u, x, &t, c, res, 1.0f) == NULL,
              "mismatched residuals accepted");
        if (!asam_ctx_ok(ctx)) printf("ok   mismatched residuals -> %s\n", asam_ctx_error(ctx));
        asam_ctx_free(ctx);
    } else {
        CHECK(0, "synthetic ControlNet: %s", asam_last_error());
    }
    asam_controlnet_free(c3);
    if (co) asam_checkpoint_close(co);
    remove(other);
}

static void check_tiny_layouts(void) {
    asam_checkpoint *ck = sd_open_model();
    asam_unet *u = NULL;
    asam_vae *v = NULL;
    CHECK(asam_unet_load(ck, "model.diffusion_model.", &u) == 0, "%s", asam_last_error());
    CHECK(asam_vae_load(ck, "first_stage_model.", &v) == 0, "%s", asam_last_error());
    if (!u || !v) exit(1);
    layout_safetensors(u);
    layout_diffusers_unet(u);
    layout_diffusers_vae(v);
    asam_checkpoint *cc = sd_open("sd_tiny/control.pth");
    layout_control_prefixes(cc, u);
    layout_detected_prefix(ck, u, v);
    layout_errors(ck, cc);
    layout_other_controlnet(u);
    asam_checkpoint_close(cc);
    asam_unet_free(u);
    asam_vae_free(v);
    asam_checkpoint_close(ck);
}

/* Another member of the family (1 ResBlock per level, 3 levels, attention at level 0 only,
 * transformer depth 2, SD2-like context 32) written in CompVis and diffusers naming: the
 * name rules hold beyond SD 1.5's numbers and both layouts load identically. */
static void check_synthetic_layouts(void) {
    asam_sd_synth_unet_cfg uc = {.in_channels = 4,
                                 .out_channels = 4,
                                 .model_channels = 32,
                                 .n_levels = 3,
                                 .num_res_blocks = 1,
                                 .mult = {1, 2, 3},
                                 .attn = {1, 0, 1},
                                 .context_dim = 32,
                                 .depth = 2,
                                 .hint_channels = 3};
    asam_sd_synth_vae_cfg vc = {.in_channels = 3,
                                .out_channels = 3,
                                .ch = 32,
                                .n_levels = 3,
                                .num_res_blocks = 1,
                                .z_channels = 4,
                                .embed_dim = 4,
                                .mult = {1, 2, 2}};
    const char *fc = "sd_load_synth_compvis.safetensors", *fu = "sd_load_synth_unet.safetensors",
               *fv = "sd_load_synth_vae.safetensors", *fn = "sd_load_synth_control.safetensors";
    int rc = asam_sd_synth_write(fc, &uc, "model.diffusion_model.", &vc, "first_stage_model.", &uc,
                                 "control_model.", 0, 0, 11, NULL, NULL);
    rc |= asam_sd_synth_write(fu, &uc, NULL, NULL, NULL, NULL, NULL, 1, 0, 11, NULL, NULL);
    /* same seed stream position: the diffusers VAE/ControlNet files are written alone, so
     * compare them against CompVis files written alone with the same seed */
    const char *fvc = "sd_load_synth_vae_cv.safetensors",
               *fnc = "sd_load_synth_control_cv.safetensors";
    rc |= asam_sd_synth_write(fv, NULL, NULL, &vc, NULL, NULL, NULL, 1, 0, 12, NULL, NULL);
    rc |= asam_sd_synth_write(fvc, NULL, NULL, &vc, "first_stage_model.", NULL, NULL, 0, 0, 12,
                              NULL, NULL);
    rc |= asam_sd_synth_write(fn, NULL, NULL, NULL, NULL, &uc, NULL, 1, 0, 13, NULL, NULL);
    rc |= asam_sd_synth_write(fnc, NULL, NULL, NULL, NULL, &uc, "control_model.", 0, 0, 13, NULL,
                              NULL);
    CHECK(rc == 0, "synthetic files: %s", asam_last_error());
    asam_checkpoint *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *f = NULL;
    asam_checkpoint_open(fc, &a);
    asam_checkpoint_open(fu, &b);
    asam_checkpoint_open(fv, &c);
    asam_checkpoint_open(fvc, &d);
    asam_checkpoint_open(fn, &e);
    asam_checkpoint_open(fnc, &f);
    asam_unet *u1 = NULL, *u2 = NULL;
    asam_vae *v1 = NULL, *v2 = NULL;
    asam_controlnet *n1 = NULL, *n2 = NULL;
    CHECK(a && asam_unet_load(a, "model.diffusion_model.", &u1) == 0, "%s", asam_last_error());
    CHECK(b && asam_unet_load(b, "", &u2) == 0, "%s", asam_last_error());
    CHECK(d && asam_vae_load(d, "first_stage_model.", &v1) == 0, "%s", asam_last_error());
    CHECK(c && asam_vae_load(c, "", &v2) == 0, "%s", asam_last_error());
    CHECK(f && asam_controlnet_load(f, "control_model.", &n1) == 0, "%s", asam_last_error());
    CHECK(e && asam_controlnet_load(e, "", &n2) == 0, "%s", asam_last_error());
    if (u1 && u2) {
        same_weights(&u1->weights, &u2->weights, "synthetic UNet CompVis vs diffusers");
        CHECK(u1->num_res_blocks == 1 && u1->n_levels == 3 && u1->context_dim == 32 &&
                  u1->input_blocks[1].attn && u1->input_blocks[1].attn->depth == 2 &&
                  !u1->input_blocks[3].attn,
              "synthetic UNet config");
    }
    if (v1 && v2)
        same_weights(sd_vae_weights(v1), sd_vae_weights(v2), "synthetic VAE CompVis vs diffusers");
    if (n1 && n2)
        same_weights(sd_controlnet_weights(n1), sd_controlnet_weights(n2),
                     "synthetic ControlNet CompVis vs diffusers");
    if (u1 && n1 && v1) {
        CHECK(asam_controlnet_check(n1, u1) == 0, "%s", asam_last_error());
        asam_ctx *ctx = asam_ctx_new(0);
        asam_ctx_set_grad(ctx, 0);
        asam_tensor *x = asam_full(ctx, ASAM_SHAPE(1, 4, 8, 8), 0.5f);
        asam_tensor *cx = asam_full(ctx, ASAM_SHAPE(1, 77, 32), 0.1f);
        asam_tensor *hint = asam_full(ctx, ASAM_SHAPE(1, 3, 64, 64), 0.3f);
        asam_tensor *res[13];
        float t = 500;
        CHECK(asam_controlnet_forward(ctx, n1, x, &t, cx, hint, res) == 0, "%s",
              asam_ctx_error(ctx));
        asam_tensor *eps = asam_unet_forward(ctx, u1, x, &t, cx, res, 0.7f);
        asam_tensor *img = asam_vae_decode(ctx, v1, x);
        asam_tensor *mean = asam_vae_encode(ctx, v1, img);
        CHECK(eps && img && mean, "synthetic forward: %s", asam_ctx_error(ctx));
        int finite = eps && img && mean;
        for (int64_t i = 0; finite && i < eps->numel; i++) finite = isfinite(eps->data[i]);
        for (int64_t i = 0; finite && i < img->numel; i++) finite = isfinite(img->data[i]);
        CHECK(finite && img->shape[2] == 32 && mean->shape[2] == 8, "synthetic outputs");
        if (finite)
            printf(
                "ok   synthetic UNet + ControlNet + VAE run (3 levels, 1 block each, depth 2)\n");
        asam_ctx_free(ctx);
    }
    asam_unet_free(u1);
    asam_unet_free(u2);
    asam_vae_free(v1);
    asam_vae_free(v2);
    asam_controlnet_free(n1);
    asam_controlnet_free(n2);
    asam_checkpoint *all[] = {a, b, c, d, e, f};
    for (int i = 0; i < 6; i++)
        if (all[i]) asam_checkpoint_close(all[i]);
    const char *files[] = {fc, fu, fv, fvc, fn, fnc};
    for (int i = 0; i < 6; i++) remove(files[i]);
}

int main(void) {
    check_name_rules();
    check_tiny_layouts();
    check_synthetic_layouts();
    return test_finish("test_sd_load");
}
