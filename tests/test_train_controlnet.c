/* ControlNet training on the tiny SD: initialisation from the UNet (zero convs leave the UNet
 * unchanged), the saved v1.1 key set, loss going down on a fixed batch, exact resume. */
#include "test_util.h"

#include <math.h>

#include "asam/checkpoint.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/optim.h"
#include "asam/sd.h"
#include "asam/synthetic.h"
#include "asam/train.h"
#include "asam/sd_models.h"

static int is_zero_init(const char *name) {
    return !strncmp(name, "zero_convs.", 11) || !strncmp(name, "middle_block_out.", 17) ||
           !strncmp(name, "input_hint_block.14.", 20);
}

static asam_tensor *randn_tensor(asam_ctx *ctx, uint64_t seed, int n, const int64_t *shape,
                                 float scale) {
    asam_tensor *t = asam_new(ctx, n, shape);
    asam_randn(seed, t->data, (size_t)t->numel);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] *= scale;
    return t;
}

// Every tensor of two ControlNet files equal bit for bit.
static int same_controlnets(const char *a, const char *b) {
    asam_checkpoint *ca = NULL, *cb = NULL;
    if (asam_checkpoint_open(a, &ca) || asam_checkpoint_open(b, &cb)) {
        if (ca) asam_checkpoint_close(ca);
        return 0;
    }
    int same = asam_checkpoint_count(ca) == asam_checkpoint_count(cb);
    for (size_t i = 0; same && i < asam_checkpoint_count(ca); i++) {
        const asam_ckpt_tensor *ta = asam_checkpoint_get(ca, i);
        const asam_ckpt_tensor *tb = asam_checkpoint_find(cb, ta->name);
        if (!tb || tb->numel != ta->numel) {
            same = 0;
            break;
        }
        float *x = malloc(ta->numel * sizeof *x), *y = malloc(ta->numel * sizeof *y);
        asam_ckpt_read_f32(ca, ta, x);
        asam_ckpt_read_f32(cb, tb, y);
        same = memcmp(x, y, ta->numel * sizeof *x) == 0;
        free(x);
        free(y);
    }
    asam_checkpoint_close(ca);
    asam_checkpoint_close(cb);
    return same;
}

/* ---- initialisation: encoder copied, zero modules zero, UNet output unchanged */
static void case_init(asam_sd *sd, asam_ctx *ctx, asam_controlnet *cn) {
    CHECK(asam_controlnet_check(cn, sd->unet) == 0, "%s", asam_last_error());
    asam_tensor **params;
    const char **names;
    size_t np;
    asam_controlnet_params(cn, &params, &names, &np);
    size_t n_zero = 0, n_copied = 0, bad = 0;
    asam_tensor **up;
    const char **un;
    size_t nu;
    asam_unet_params(sd->unet, &up, &un, &nu);
    for (size_t i = 0; i < np; i++) {
        const asam_tensor *p = params[i];
        if (is_zero_init(names[i])) {
            for (int64_t k = 0; k < p->numel; k++) bad += p->data[k] != 0.0f;
            n_zero++;
            continue;
        }
        for (size_t j = 0; j < nu; j++)
            if (!strcmp(un[j], names[i])) {
                bad += up[j]->numel != p->numel ||
                       memcmp(up[j]->data, p->data, p->numel * sizeof(float)) != 0;
                n_copied++;
            }
    }
    CHECK(bad == 0, "%zu values differ from the expected initialisation", bad);
    CHECK(n_zero == 2 * 12 + 2 + 2, "%zu zero-initialised tensors", n_zero);
    CHECK(n_copied + 16 - 2 + n_zero == np, "%zu copied of %zu", n_copied, np);
    printf("ok   init: %zu tensors copied from the UNet, %zu zero-initialised\n", n_copied, n_zero);

    asam_ctx_set_grad(ctx, 0);
    asam_tensor *x = randn_tensor(ctx, 11, ASAM_SHAPE(1, 4, 16, 16), 1.0f);
    asam_tensor *context = randn_tensor(ctx, 12, ASAM_SHAPE(1, 77, 64), 1.0f);
    asam_tensor *hint = randn_tensor(ctx, 13, ASAM_SHAPE(1, 3, 128, 128), 0.5f);
    for (int64_t i = 0; i < hint->numel; i++) hint->data[i] = fabsf(hint->data[i]);
    float tt = 500;
    asam_tensor *res[13];
    CHECK(asam_controlnet_forward(ctx, cn, x, &tt, context, hint, res) == 0, "%s",
          asam_ctx_error(ctx));
    asam_tensor *e0 = asam_unet_forward(ctx, sd->unet, x, &tt, context, NULL, 1.0f);
    asam_tensor *e1 = asam_unet_forward(ctx, sd->unet, x, &tt, context, res, 1.0f);
    CHECK(e0 && e1, "%s", asam_ctx_error(ctx));
    if (e0 && e1) {
        double rd = test_rel_diff(e1->data, e0->data, (size_t)e0->numel);
        CHECK(rd == 0.0, "untrained ControlNet changes the UNet output (rel diff %g)", rd);
        if (rd == 0.0) printf("ok   untrained ControlNet leaves the UNet output unchanged\n");
    }
}

/* ---- saved file: v1.1 key set, reloads with the same values */
static void case_saved_file(const char *dir, asam_controlnet *cn) {
    asam_tensor **params;
    const char **names;
    size_t np;
    asam_controlnet_params(cn, &params, &names, &np);
    char pth[512], st[512];
    snprintf(pth, sizeof pth, "%s/init.pth", dir);
    snprintf(st, sizeof st, "%s/init.safetensors", dir);
    CHECK(asam_controlnet_save(pth, cn) == 0, "%s", asam_last_error());
    CHECK(asam_controlnet_save(st, cn) == 0, "%s", asam_last_error());
    CHECK(same_controlnets(pth, st), ".pth and .safetensors differ");
    asam_checkpoint *ck = NULL;
    CHECK(asam_checkpoint_open(pth, &ck) == 0, "%s", asam_last_error());
    if (ck) {
        CHECK(asam_checkpoint_count(ck) == 338, "%zu tensors, want 338", asam_checkpoint_count(ck));
        char keys[4096];
        if (test_data_file("sd_tiny/control_keys.tsv", keys, sizeof keys) == 0) {
            FILE *f = fopen(keys, "r");
            char line[1024];
            size_t n_ref = 0, missing = 0;
            while (f && fgets(line, sizeof line, f)) {
                char *tab = strchr(line, '\t');
                if (!tab || strncmp(line, "control_model.", 14)) continue;
                *tab = 0;
                n_ref++;
                if (!asam_checkpoint_find(ck, line)) {
                    missing++;
                    fprintf(stderr, "missing key %s\n", line);
                }
            }
            if (f) fclose(f);
            CHECK(n_ref == asam_checkpoint_count(ck) && missing == 0,
                  "key set differs from control_keys.tsv (%zu ref, %zu missing)", n_ref, missing);
            if (n_ref && !missing) printf("ok   key set = control_keys.tsv (%zu keys)\n", n_ref);
        } else {
            printf("SKIP: sd_tiny/control_keys.tsv not found; key set checked by count only\n");
        }
        asam_controlnet *cn2 = NULL;
        CHECK(asam_controlnet_load(ck, "control_model.", &cn2) == 0, "%s", asam_last_error());
        if (cn2) {
            asam_tensor **p2;
            const char **n2;
            size_t np2;
            asam_controlnet_params(cn2, &p2, &n2, &np2);
            size_t diff = np2 != np;
            for (size_t i = 0; i < np && !diff; i++)
                diff += strcmp(n2[i], names[i]) != 0 ||
                        memcmp(p2[i]->data, params[i]->data, params[i]->numel * 4) != 0;
            CHECK(diff == 0, "reloaded ControlNet differs");
            if (!diff) printf("ok   saved file reloads under control_model.* with equal values\n");
            asam_controlnet_free(cn2);
        }
        asam_checkpoint_close(ck);
    }
}

/* ---- the loss goes down on a fixed batch */
static void case_loss_goes_down(asam_sd *sd, asam_ctx *ctx, asam_controlnet *cn) {

    asam_synth_sample s[2];
    asam_tensor *zs[2], *hs[2], *cs[2];
    for (int b = 0; b < 2; b++) {
        CHECK(asam_synthetic_render(b, 128, 3, &s[b]) == 0, "%s", asam_last_error());
        asam_tensor *img = asam_sd_image_to_tensor(ctx, &s[b].img, 128, 128, -1.0f);
        zs[b] = asam_scale(ctx, asam_vae_encode(ctx, sd->vae, img), ASAM_SD_LATENT_SCALE);
        hs[b] = asam_zeros(ctx, ASAM_SHAPE(1, 3, 128, 128)); // one colour per mask
        for (int k = 0; k < s[b].n_masks; k++)
            for (int p = 0; p < 128 * 128; p++)
                if (s[b].masks[(size_t)k * 128 * 128 + p])
                    for (int c = 0; c < 3; c++)
                        hs[b]->data[c * 128 * 128 + p] = (float)((k + 1) >> c & 1);
        cs[b] = asam_sd_encode_prompt(ctx, sd, s[b].caption);
        asam_synth_sample_free(&s[b]);
    }
    asam_tensor *z0 = asam_concat(ctx, zs, 2, 0), *h = asam_concat(ctx, hs, 2, 0),
                *c = asam_concat(ctx, cs, 2, 0);
    asam_tensor *noise = randn_tensor(ctx, 21, ASAM_SHAPE(2, 4, 16, 16), 1.0f);
    int t[2] = {300, 700};
    CHECK(asam_ctx_ok(ctx), "%s", asam_ctx_error(ctx));
    asam_tensor **pp;
    const char **nn;
    size_t n;
    asam_controlnet_params(cn, &pp, &nn, &n);
    asam_controlnet_set_trainable(cn, 1);
    asam_optim *opt = asam_optim_new(ASAM_ADAMW, pp, (int)n, 1e-3f, 0.9, 0.999, 1e-8, 0.01);
    float first = 0, last = 0;
    for (int it = 0; it <= 8; it++) {
        asam_mark mk = asam_ctx_mark(ctx);
        asam_ctx_set_grad(ctx, it < 8);
        asam_optim_zero_grad(opt);
        asam_tensor *loss = asam_controlnet_loss(ctx, sd->unet, cn, z0, t, noise, c, h);
        CHECK(loss != NULL, "%s", asam_ctx_error(ctx));
        if (!loss) break;
        if (it == 0) first = loss->data[0];
        last = loss->data[0];
        if (it < 8) {
            CHECK(asam_backward(ctx, loss) == 0, "%s", asam_ctx_error(ctx));
            asam_optim_step(opt);
        }
        asam_ctx_release(ctx, mk);
    }
    CHECK(last < 0.98f * first, "loss %.6f -> %.6f did not go down", first, last);
    printf("ok   fixed-batch loss %.6f -> %.6f after 8 AdamW steps\n", first, last);
    asam_optim_free(opt);
}

/* A job's options over a fresh synthetic SA-1B shard of n images of side size (the folder
 * dir/shard; spec receives "sa1b:FOLDER" and must outlive o): quiet, no periodic saves. */
static void job_opts(const char *sd_path, const char *dir, const char *shard, int n, int size,
                     uint64_t data_seed, char *spec, size_t n_spec, asam_cn_train_opts *o) {
    char data[512];
    snprintf(data, sizeof data, "%s/%s", dir, shard);
    snprintf(spec, n_spec, "sa1b:%s", data);
    CHECK(asam_synthetic_sa1b(data, n, size, data_seed) == 0, "%s", asam_last_error());
    asam_cn_train_opts_default(o);
    o->sd = sd_path, o->data = spec, o->size = size, o->verbose = 0, o->save_every = 0;
}

/* ---- the whole job: resumed run == uninterrupted run */
static void case_resume(const char *sd_path, const char *dir) {
    char outa[512], outb[512], spec[600];
    snprintf(outa, sizeof outa, "%s/a.pth", dir);
    snprintf(outb, sizeof outb, "%s/b.safetensors", dir);
    asam_cn_train_opts o;
    job_opts(sd_path, dir, "shard", 3, 128, 9, spec, sizeof spec, &o);
    o.batch = 2, o.steps = 4, o.lr = 1e-4f, o.seed = 4;
    float la[4] = {0}, lb[4] = {0};
    o.out = outa, o.losses = la;
    CHECK(asam_train_controlnet(&o) == 0, "%s", asam_last_error());
    o.out = outb, o.losses = lb, o.stop_after = 2;
    CHECK(asam_train_controlnet(&o) == 1, "stop_after did not stop: %s", asam_last_error());
    CHECK(!asam_file_exists(outb), "output written by a stopped run");
    o.stop_after = 0, o.resume = 1;
    CHECK(asam_train_controlnet(&o) == 0, "%s", asam_last_error());
    CHECK(same_controlnets(outa, outb), "resumed run differs from the uninterrupted one");
    CHECK(memcmp(la, lb, sizeof la) == 0, "losses differ: %g %g %g %g vs %g %g %g %g", la[0], la[1],
          la[2], la[3], lb[0], lb[1], lb[2], lb[3]);
    printf("ok   resume after 2 of 4 steps gives identical parameters (losses %.4f %.4f %.4f "
           "%.4f)\n",
           la[0], la[1], la[2], la[3]);
    // Resuming a finished run only rewrites the output; a mismatched seed is refused.
    o.seed = 5;
    CHECK(asam_train_controlnet(&o) == -1 && strstr(asam_last_error(), "seed"),
          "state of another seed accepted: %s", asam_last_error());
    printf("ok   resume refused: %s\n", asam_last_error());
    o.lr = 2e-4f, o.seed = 4; /* another option: named in the one line */
    CHECK(asam_train_controlnet(&o) == -1 && strstr(asam_last_error(), "--lr"),
          "state of another lr accepted: %s", asam_last_error());
    o.force = 1, o.steps = 1; /* --force: starts over, the state then records the new options */
    CHECK(asam_train_controlnet(&o) == 0, "--force: %s", asam_last_error());
    o.force = 0;
    CHECK(asam_train_controlnet(&o) == 0, "resume of the forced run: %s", asam_last_error());
    printf("ok   --force starts over and records the new options\n");
    { /* the output weights carry the state's provenance record */
        char sp[1200];
        snprintf(sp, sizeof sp, "%s.state.safetensors", o.out);
        asam_checkpoint *st = NULL, *ck = NULL;
        CHECK(asam_checkpoint_open(sp, &st) == 0 && asam_checkpoint_open(o.out, &ck) == 0,
              "open output/state: %s", asam_last_error());
        const char *a = st ? asam_checkpoint_metadata(st, "provenance") : NULL,
                   *b = ck ? asam_checkpoint_metadata(ck, "provenance") : NULL;
        CHECK(a && b && !strcmp(a, b) && strstr(b, "\"--lr\""), "output provenance %s vs state %s",
              b ? b : "(none)", a ? a : "(none)");
        asam_checkpoint_close(st);
        asam_checkpoint_close(ck);
        printf("ok   %s carries the run's provenance\n", o.out);
    }
    o.data = "sa1b:/nonexistent/dir";
    CHECK(asam_train_controlnet(&o) == -1 && strstr(asam_last_error(), "/nonexistent/dir"),
          "bad data dir: %s", asam_last_error());
}

/* ---- under bf16 (where the CPU has it): the job runs, its ControlNet starting from the UNet
 * encoder's fp32 values (the bundle would otherwise hold them in bf16 as it reads them) */
static void case_bf16(const char *sd_path, const char *dir, const asam_controlnet *cn32) {
    if (!asam_bf16_supported()) {
        printf("SKIP (part): no AVX512-BF16 on this CPU: train-controlnet under bf16 not run\n");
        return;
    }
    char out[512], spec[600];
    snprintf(out, sizeof out, "%s/bf16.safetensors", dir);
    asam_cn_train_opts o;
    job_opts(sd_path, dir, "shard16", 2, 64, 5, spec, sizeof spec, &o);
    float losses[2] = {NAN, NAN};
    o.out = out, o.batch = 1, o.steps = 2, o.lr = 1e-30f, o.losses = losses, o.seed = 5;
    CHECK(asam_set_precision(ASAM_BF16) == 0, "%s", asam_last_error());
    int rc = asam_train_controlnet(&o);
    asam_set_precision(ASAM_FP32);
    CHECK(rc == 0, "train-controlnet under bf16: %s", asam_last_error());
    CHECK(isfinite(losses[0]) && isfinite(losses[1]), "bf16 losses %g %g", losses[0], losses[1]);
    /* learning rate 1e-30: the saved encoder weights are the fp32 init (steps of 1e-30 vanish in
     * them; their bf16 rounding would be off by 1e-3 relative) */
    asam_checkpoint *ck = NULL;
    asam_controlnet *saved = NULL;
    CHECK(rc == 0 && asam_checkpoint_open(out, &ck) == 0 &&
              asam_controlnet_load(ck, "control_model.", &saved) == 0,
          "reload %s: %s", out, asam_last_error());
    asam_checkpoint_close(ck);
    if (saved) {
        asam_tensor **p0, **p1;
        const char **n0, **n1;
        size_t c0, c1, diff = 0, enc = 0;
        double worst = 0;
        asam_controlnet_params(cn32, &p0, &n0, &c0);
        asam_controlnet_params(saved, &p1, &n1, &c1);
        for (size_t i = 0; i < c0 && c0 == c1; i++)
            if (!strncmp(n0[i], "input_blocks.", 13) || !strncmp(n0[i], "middle_block.", 13)) {
                enc++;
                int off = 0;
                for (int64_t j = 0; j < p0[i]->numel; j++) {
                    double d = fabs((double)p0[i]->data[j] - p1[i]->data[j]);
                    if (d > worst) worst = d;
                    off |= d > 1e-20;
                }
                diff += off;
            }
        CHECK(c0 == c1 && enc > 0 && diff == 0,
              "bf16 run: %zu of %zu encoder weights differ from the fp32 init (by up to %g)", diff,
              enc, worst);
        asam_controlnet_free(saved);
    }
    if (!test_failures)
        printf("ok   train-controlnet under bf16: losses %.4f %.4f, encoder from the fp32 init\n",
               losses[0], losses[1]);
}

int main(void) {
    asam_set_threads(1); // tiny model: threads only add contention (and the run stays exact)
    char sd_path[4096];
    if (test_data_file("sd_tiny/model.ckpt", sd_path, sizeof sd_path))
        TEST_SKIP("sd_tiny/model.ckpt not found");
    asam_sd *sd = NULL;
    if (asam_sd_load(sd_path, NULL, &sd)) {
        fprintf(stderr, "FAIL: %s\n", asam_last_error());
        return 1;
    }
    asam_ctx *ctx = asam_ctx_new(0);
    char dir[256];
    snprintf(dir, sizeof dir, "train_cn_test_%d", (int)getpid());
    asam_mkdirs(dir);
    asam_controlnet *cn = NULL;
    CHECK(asam_controlnet_init_from_unet(sd->unet, 3, 5, &cn) == 0, "%s", asam_last_error());
    if (!cn) return test_finish("test_train_controlnet");
    case_init(sd, ctx, cn);
    case_saved_file(dir, cn);
    case_loss_goes_down(sd, ctx, cn);
    asam_controlnet_free(cn);
    asam_controlnet *cn32 = NULL; /* a fresh init: case_loss_goes_down trained cn */
    CHECK(asam_controlnet_init_from_unet(sd->unet, 3, 5, &cn32) == 0, "%s", asam_last_error());
    if (cn32) case_bf16(sd_path, dir, cn32);
    asam_controlnet_free(cn32);
    case_resume(sd_path, dir);
    asam_ctx_free(ctx);
    asam_sd_free(sd);
    if (!test_failures) test_rm_rf(dir); /* kept for a look when something failed */
    return test_finish("test_train_controlnet");
}
