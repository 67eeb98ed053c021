/* asam_tune on a synthetic SA-1B folder with the tiny SAM (cached embeddings):
 *  - only the 1,280 token values change, every other tensor is byte-identical;
 *  - the .pth holds exactly the official key set (the fixture's), all F32, and loads back;
 *  - stop after epoch 1 + --resume ends bit-identical to an uninterrupted run;
 *  - the training loss goes down (box prompts, full loss, a larger lr). */
#include "asam/asam.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "test_synth.h"
#include "test_util.h"

/* A: uninterrupted; B: stopped after epoch 1, then resumed: every output file identical. */
static void case_resume(asam_tune_opts *o, const char *root) {
    /* A: uninterrupted */
    static char outA[1200], outB[1200]; /* o->out_dir points here after the case */
    snprintf(outA, sizeof outA, "%s/A", root);
    snprintf(outB, sizeof outB, "%s/B", root);
    o->out_dir = outA;
    asam_tune_report ra;
    int rc = asam_tune(o, &ra);
    CHECK(rc == 0, "tune A: %s", asam_last_error());
    CHECK(ra.epochs_done == 2 && ra.n_images == 2, "A: %d epochs, %d images", ra.epochs_done,
          ra.n_images);

    /* B: stop after epoch 1, then resume */
    o->out_dir = outB;
    o->stop_after = 1;
    asam_tune_report rb;
    rc = asam_tune(o, &rb);
    CHECK(rc == 0 && rb.epochs_done == 1, "tune B part 1: %s", asam_last_error());
    o->stop_after = 0;
    o->resume = 1;
    rc = asam_tune(o, &rb);
    CHECK(rc == 0 && rb.start_epoch == 1 && rb.epochs_done == 2, "tune B resume: %s (start %d)",
          asam_last_error(), rb.start_epoch);
    char pa[1300], pb[1300];
    const char *outs[] = {"sam_tuned.safetensors", "decoder_tokens.safetensors",
                          "state.safetensors", "sam_tuned.pth"};
    for (int i = 0; i < 4; i++) {
        snprintf(pa, sizeof pa, "%s/%s", outA, outs[i]);
        snprintf(pb, sizeof pb, "%s/%s", outB, outs[i]);
        CHECK(test_same_file(pa, pb), "resumed %s differs from the uninterrupted one", outs[i]);
    }
    printf("ok   resumed run bit-identical to the uninterrupted one\n");
    /* every output carries the state's provenance record (safetensors metadata / the .pth
     * archive's asam_metadata.json) */
    asam_checkpoint *st = NULL;
    snprintf(pa, sizeof pa, "%s/state.safetensors", outA);
    CHECK(asam_checkpoint_open(pa, &st) == 0, "open state: %s", asam_last_error());
    const char *rec = st ? asam_checkpoint_metadata(st, "provenance") : NULL;
    CHECK(rec && strstr(rec, "\"--lr\""), "state provenance: %s", rec ? rec : "(none)");
    for (int i = 0; rec && i < 4; i++) {
        if (i == 2) continue; /* the state itself */
        asam_checkpoint *ck = NULL;
        snprintf(pa, sizeof pa, "%s/%s", outA, outs[i]);
        CHECK(asam_checkpoint_open(pa, &ck) == 0, "open %s: %s", outs[i], asam_last_error());
        const char *r = ck ? asam_checkpoint_metadata(ck, "provenance") : NULL;
        CHECK(r && !strcmp(r, rec), "%s: provenance %s", outs[i], r ? r : "(none)");
        asam_checkpoint_close(ck);
    }
    asam_checkpoint_close(st);
    printf("ok   sam_tuned.pth/.safetensors and decoder_tokens carry the run's provenance\n");
}

/* Only the 1,280 token values changed; the .pth (official keys, all F32) equals the
 * safetensors and loads back. */
static void case_only_tokens(const char *model, const char *outA) {
    char pa[1300], pb[1300];
    asam_checkpoint *orig = NULL, *tuned = NULL, *pth = NULL;
    snprintf(pa, sizeof pa, "%s/sam_tuned.safetensors", outA);
    CHECK(asam_checkpoint_open(model, &orig) == 0, "open model");
    CHECK(asam_checkpoint_open(pa, &tuned) == 0, "open tuned: %s", asam_last_error());
    snprintf(pb, sizeof pb, "%s/sam_tuned.pth", outA);
    CHECK(asam_checkpoint_open(pb, &pth) == 0, "open tuned pth: %s", asam_last_error());
    if (orig && tuned && pth) {
        size_t n = asam_checkpoint_count(orig);
        CHECK(asam_checkpoint_count(tuned) == n && asam_checkpoint_count(pth) == n,
              "key counts %zu / %zu / %zu", n, asam_checkpoint_count(tuned),
              asam_checkpoint_count(pth));
        CHECK(!strcmp(asam_checkpoint_format(pth), "torch-zip"), "pth is a torch zip");
        long changed = 0, other_diff = 0, token_vals = 0;
        for (size_t i = 0; i < n; i++) {
            const asam_ckpt_tensor *a = asam_checkpoint_get(orig, i);
            const asam_ckpt_tensor *b = asam_checkpoint_find(tuned, a->name);
            const asam_ckpt_tensor *c = asam_checkpoint_find(pth, a->name);
            CHECK(b && c, "key %s missing from the tuned files", a->name);
            if (!b || !c) continue;
            CHECK(c->dtype == ASAM_DT_F32 && c->numel == a->numel && c->ndim == a->ndim,
                  "pth %s: dtype/shape", a->name);
            float *va = malloc(sizeof(float) * a->numel), *vb = malloc(sizeof(float) * a->numel),
                  *vc = malloc(sizeof(float) * a->numel);
            asam_ckpt_read_f32(orig, a, va);
            asam_ckpt_read_f32(tuned, b, vb);
            asam_ckpt_read_f32(pth, c, vc);
            int is_tok = !strcmp(a->name, "mask_decoder.iou_token.weight") ||
                         !strcmp(a->name, "mask_decoder.mask_tokens.weight");
            for (int64_t k = 0; k < a->numel; k++) {
                int d = memcmp(&va[k], &vb[k], 4) != 0;
                if (is_tok) {
                    token_vals++;
                    changed += d;
                } else {
                    other_diff += d;
                }
            }
            CHECK(!memcmp(vb, vc, sizeof(float) * a->numel), "%s: pth and safetensors differ",
                  a->name);
            free(va);
            free(vb);
            free(vc);
        }
        CHECK(token_vals == 1280, "token values %ld", token_vals);
        /* Adam moves a value by about lr unless its gradient stays far below eps (1e-8) in
         * every step, which the random prompts of 2 images can do for a value or two */
        CHECK(changed >= 1270, "changed token values %ld of 1280", changed);
        CHECK(other_diff == 0, "%ld values outside the tokens changed", other_diff);
        printf("ok   %ld token values changed, %ld others\n", changed, other_diff);
    }
    asam_checkpoint_close(orig);
    asam_checkpoint_close(tuned);
    asam_checkpoint_close(pth);
    asam_sam *m = NULL;
    CHECK(asam_sam_load(pb, &m) == 0, "tuned .pth loads back: %s", asam_last_error());
    if (m) asam_sam_free(m);
}

/* The decoder-only file holds the two token tensors. */
static void case_decoder_file(const char *outA) {
    char pa[1300];
    snprintf(pa, sizeof pa, "%s/decoder_tokens.safetensors", outA);
    asam_checkpoint *dt;
    if (asam_checkpoint_open(pa, &dt) == 0) {
        CHECK(asam_checkpoint_count(dt) == 2, "decoder file holds 2 tensors");
        asam_checkpoint_close(dt);
    } else {
        CHECK(0, "open decoder file: %s", asam_last_error());
    }
}

/* The loss goes down: deterministic prompts (boxes) and full loss, larger lr. */
static void case_loss_goes_down(asam_tune_opts *o, const char *root) {
    static char outC[1200]; /* o->out_dir points here after the case */
    snprintf(outC, sizeof outC, "%s/C", root);
    o->out_dir = outC;
    o->resume = 0;
    o->epochs = 3;
    o->batch = 1;
    o->lr = 0.05f;
    o->prompts = ASAM_PROMPT_BOX;
    o->loss.points = 0;
    asam_tune_report rc_;
    int rc = asam_tune(o, &rc_);
    CHECK(rc == 0, "tune C: %s", asam_last_error());
    printf("     epoch losses: %.5f %.5f %.5f\n", rc_.epoch_loss[0], rc_.epoch_loss[1],
           rc_.epoch_loss[2]);
    CHECK(rc_.epoch_loss[2] < rc_.epoch_loss[1] && rc_.epoch_loss[1] < rc_.epoch_loss[0],
          "loss did not go down (%g -> %g -> %g)", rc_.epoch_loss[0], rc_.epoch_loss[1],
          rc_.epoch_loss[2]);
    printf("ok   training loss goes down\n");
}

/* Augmentation (flip + large-scale jitter, encoder run per image): runs and writes outputs. */
static void case_augmentation(asam_tune_opts *o, const char *root) {
    char pa[1300];
    static char outD[1200]; /* o->out_dir points here after the case */
    snprintf(outD, sizeof outD, "%s/D", root);
    o->out_dir = outD;
    o->augment = 1;
    o->epochs = 1;
    o->limit = 1;
    o->prompts = ASAM_PROMPT_BOX | ASAM_PROMPT_POINTS | ASAM_PROMPT_MASK;
    o->loss.points = 1;
    asam_tune_report rd;
    int rc = asam_tune(o, &rd);
    CHECK(rc == 0 && rd.epochs_done == 1 && rd.n_images == 1, "tune with augmentation: %s",
          asam_last_error());
    snprintf(pa, sizeof pa, "%s/decoder_tokens.safetensors", outD);
    CHECK(test_is_file(pa), "augmented run wrote its outputs");
    if (rc == 0) printf("ok   augmented run (loss %.5f)\n", rd.epoch_loss[0]);
}

/* Bad inputs fail cleanly. */
static void case_bad_inputs(asam_tune_opts *o) {
    const char *bad[1] = {"sa1b:/nonexistent/dir"};
    o->data = bad;
    CHECK(asam_tune(o, NULL) != 0 && strstr(asam_last_error(), "/nonexistent/dir"),
          "missing dataset: '%s'", asam_last_error());
}

int main(void) {
    char model[4096];
    if (test_data_file("sam_tiny/model.pth", model, sizeof model))
        TEST_SKIP("sam_tiny/model.pth not found");
    char tmpl[] = "/tmp/asam_test_tune_XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL, "mkdtemp");
    if (!root) return 1;
    char data[1200], cache[1200], outA[1200], spec[1300];
    snprintf(data, sizeof data, "%s/sa1b", root);
    snprintf(cache, sizeof cache, "%s/cache", root);
    snprintf(outA, sizeof outA, "%s/A", root);
    snprintf(spec, sizeof spec, "sa1b:%s", data);
    CHECK(syn_write_sa1b(data, 2, 96, 64, 3, 1) == 0, "synthetic data");
    const char *specs[1] = {spec};

    asam_tune_opts o;
    asam_tune_defaults(&o);
    o.model_path = model;
    o.data = specs;
    o.n_data = 1;
    o.cache_dir = cache;
    o.epochs = 2;
    o.batch = 2;
    o.augment = 0;
    o.seed = 7;
    o.masks_per_image = 2;
    o.loss.n_points = 2048; /* fewer points keep the test fast; the code path is the same */
    o.progress = 1;

    case_resume(&o, root);
    case_only_tokens(model, outA);
    case_decoder_file(outA);
    case_loss_goes_down(&o, root);
    case_augmentation(&o, root);
    case_bad_inputs(&o);
    test_rm_rf(root);
    return test_finish("test_tune");
}
