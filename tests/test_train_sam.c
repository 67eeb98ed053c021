/* asam train-sam on a tiny synthetic SA-1B folder (64 px images, a 64-input SAM of width 32):
 * the loss goes down; stopping at step k and resuming gives a checkpoint byte-identical to an
 * uninterrupted run; the checkpoint loads through the official-layout loader with the chosen
 * architecture; a changed option refuses to resume; the trained model beats the untrained one
 * on box-prompt mIoU. */
#include "test_util.h"

#include "asam/engine.h"
#include "asam/error.h"
#include "asam/sam.h"
#include "asam/synthetic.h"
#include "asam/train_sam.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void tiny_opts(asam_sam_train_opts *o, const char *data, const char *out) {
    asam_sam_train_opts_default(o);
    o->data = data;
    o->out = out;
    o->img_size = 64;
    o->embed_dim = 32;
    o->depth = 2;
    o->num_heads = 2;
    o->window = 2;
    o->n_global = 1;
    o->global_idx[0] = 1;
    o->lr = 1e-3f;
    o->warmup = 5;
    o->batch = 2;
    o->prompts = 2;
    o->seed = 5;
    o->save_every = 0;
    o->verbose = 0;
}

int main(void) {
    asam_set_threads(1);
    char dir[] = "/tmp/asam_train_sam_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char data[512], a[512], b[512], c[512];
    snprintf(data, sizeof data, "%s/data", dir);
    CHECK(asam_synthetic_sa1b(data, 6, 64, 11) == 0, "synthetic: %s", asam_last_error());

    /* ---- the loss goes down ---- */
    enum { STEPS = 40 };
    float losses[STEPS];
    asam_sam_train_opts o;
    snprintf(a, sizeof a, "%s/a.safetensors", dir);
    tiny_opts(&o, data, a);
    o.steps = STEPS;
    o.losses = losses;
    CHECK(asam_train_sam(&o) == 0, "train: %s", asam_last_error());
    double first = 0, last = 0;
    for (int i = 0; i < 8; i++) first += losses[i] / 8, last += losses[STEPS - 8 + i] / 8;
    printf("loss: first 8 steps %.4f, last 8 steps %.4f\n", first, last);
    CHECK(last < 0.8 * first, "loss did not go down: %.4f -> %.4f", first, last);

    /* ---- the checkpoint loads through the official-layout loader ---- */
    asam_sam_config cfg;
    CHECK(asam_sam_config_from_file(a, &cfg) == 0, "config: %s", asam_last_error());
    CHECK(cfg.img_size == 64 && cfg.embed_dim == 32 && cfg.depth == 2 && cfg.num_heads == 2 &&
              cfg.window == 2 && cfg.n_global == 1 && cfg.global_idx[0] == 1,
          "architecture read back: img %d C %d depth %d heads %d window %d", cfg.img_size,
          cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.window);
    asam_sam *m = NULL, *m0 = NULL;
    CHECK(asam_sam_load(a, &m) == 0, "load: %s", asam_last_error());
    asam_sam_config c0 = cfg;
    CHECK(asam_sam_init_random(&c0, 5, &m0) == 0, "init: %s", asam_last_error());
    double miou = 0, miou0 = 0;
    int nm = 0, nm0 = 0;
    if (m && m0) {
        CHECK(asam_sam_box_miou(m, data, 0, &miou, &nm) == 0, "miou: %s", asam_last_error());
        CHECK(asam_sam_box_miou(m0, data, 0, &miou0, &nm0) == 0, "miou0: %s", asam_last_error());
        printf("box mIoU on the training images: untrained %.4f, after %d steps %.4f (%d masks)\n",
               miou0, STEPS, miou, nm);
        CHECK(nm > 6 && nm == nm0, "mask count %d / %d", nm, nm0);
        CHECK(miou > miou0 + 0.1, "training did not raise the box mIoU (%.4f -> %.4f)", miou0,
              miou);
    }
    asam_sam_free(m);
    asam_sam_free(m0);

    /* ---- stop at step 4 and resume == uninterrupted, byte for byte ---- */
    snprintf(b, sizeof b, "%s/b.safetensors", dir);
    snprintf(c, sizeof c, "%s/c.safetensors", dir);
    tiny_opts(&o, data, b);
    o.steps = 9;
    CHECK(asam_train_sam(&o) == 0, "uninterrupted: %s", asam_last_error());
    tiny_opts(&o, data, c);
    o.steps = 9;
    o.stop_after = 4;
    CHECK(asam_train_sam(&o) == 1, "stop-after: %s", asam_last_error());
    CHECK(access(c, F_OK) != 0, "a stopped run wrote its checkpoint");
    o.stop_after = 0;
    o.resume = 1;
    CHECK(asam_train_sam(&o) == 0, "resume: %s", asam_last_error());
    size_t nb = 0, nc = 0;
    char *fb = test_slurp(b, &nb), *fc = test_slurp(c, &nc);
    CHECK(fb && fc && nb == nc && !memcmp(fb, fc, nb),
          "resumed checkpoint differs from the uninterrupted one (%zu vs %zu bytes)", nb, nc);
    free(fb);
    free(fc);

    /* ---- a run made without --lr-drop resumes with one ahead of it, as if it had it ---- */
    tiny_opts(&o, data, b);
    o.steps = 9;
    o.lr_drop = 6;
    CHECK(asam_train_sam(&o) == 0, "uninterrupted with lr_drop: %s", asam_last_error());
    tiny_opts(&o, data, c);
    o.steps = 9;
    o.stop_after = 4;
    CHECK(asam_train_sam(&o) == 1, "stop-after: %s", asam_last_error());
    o.stop_after = 0;
    o.resume = 1;
    o.lr_drop = 4; /* already reached: the schedule so far would differ */
    CHECK(asam_train_sam(&o) == -1 && strstr(asam_last_error(), "--lr-drop"),
          "resume with a passed --lr-drop: %s", asam_last_error());
    o.lr_drop = 6;
    CHECK(asam_train_sam(&o) == 0, "resume with lr_drop: %s", asam_last_error());
    fb = test_slurp(b, &nb), fc = test_slurp(c, &nc);
    CHECK(fb && fc && nb == nc && !memcmp(fb, fc, nb),
          "lr_drop added on resume differs from the run that had it from the start");
    free(fb);
    free(fc);

    /* ---- a changed option refuses to resume, naming it ---- */
    tiny_opts(&o, data, c);
    o.steps = 12;
    o.resume = 1;
    o.lr = 2e-3f;
    CHECK(asam_train_sam(&o) == -1 && strstr(asam_last_error(), "--lr"),
          "resume with another --lr: %s", asam_last_error());
    /* bad options: one message */
    tiny_opts(&o, data, c);
    o.window = 9;
    CHECK(asam_train_sam(&o) == -1 && strstr(asam_last_error(), "--window"), "window: %s",
          asam_last_error());
    tiny_opts(&o, "/nonexistent/folder", c);
    CHECK(asam_train_sam(&o) == -1 && strstr(asam_last_error(), "/nonexistent/folder"),
          "missing data: %s", asam_last_error());

    if (!test_failures) test_rm_rf(dir);
    return test_finish("test_train_sam");
}
