/* Three token-tuning Adam steps against the official training code (sam_continue_learning
 * main.py train loop, SamDataset + RandomHFlip + LargeScaleJitter, masks_to_boxes,
 * masks_sample_points, masks_noise, loss_masks) run on the tiny fixture SAM:
 * tests/data/asam_ref/tune.*, made by scripts/ref/make_asam_tune_reference.py.
 *
 * asam_tune runs for real (data set in the official layout, 2 images per step, point group 2);
 * the official run's random draws (flip, jitter scale, crop offsets, prompt kind, the indices
 * masks_sample_points picked) are injected through the test-only hook (asam/tune_hook.h), and the
 * counter-based draws both sides compute (loss candidates and random share, mask noise) are
 * computed here as the script does. Pinned per step: the rule deciding point prompts (D8), the
 * crop margins (the jitter's size arithmetic, D3), each mask's foreground pixels after the
 * jitter (kept even when empty, D9), the loss, the gradients of iou_token and mask_tokens, and
 * the tokens after Adam. */
#include "asam/asam.h"
#include "asam/tune_hook.h"
#include "asam/util.h"
#include "asam_ref_util.h"

typedef struct {
    cJSON *j;
    const cJSON *steps, *flip, *lsj_u, *crop, *kind, *perm;
    double worst_loss, worst_grad, worst_param;
    int n_steps;
} ref_state;

static const cJSON *at(const cJSON *a, int i) {
    return cJSON_GetArrayItem(a, i);
}

static void hk_order(void *u, int epoch, size_t *order, size_t n) {
    ref_state *R = u;
    (void)epoch;
    size_t k = 0;
    const cJSON *st;
    cJSON_ArrayForEach(st, R->steps) {
        const cJSON *im;
        cJSON_ArrayForEach(im, cJSON_GetObjectItemCaseSensitive(st, "images")) {
            if (k < n) order[k++] = (size_t)atoi(im->valuestring + 3) - 1; /* sa_N: item N-1 */
        }
    }
    CHECK(k == n, "reference lists %zu images, the data set has %zu", k, n);
}

static int hk_flip(void *u, int step, int k) {
    ref_state *R = u;
    return at(R->flip, 2 * step + k)->valuedouble >= 0.5; /* dataloader.py:180 */
}

static float hk_lsj_u(void *u, int step, int k) {
    ref_state *R = u;
    return (float)at(R->lsj_u, 2 * step + k)->valuedouble;
}

static int hk_crop(void *u, int step, int k, int axis, int margin) {
    ref_state *R = u;
    const cJSON *c = at(R->crop, 2 * (2 * step + k) + axis);
    int off = at(c, 0)->valueint, want = at(c, 1)->valueint;
    CHECK(margin == want, "step %d image %d axis %d: crop margin %d, official %d", step, k, axis,
          margin, want);
    return off;
}

static int kind_bit(const char *s) {
    return !strcmp(s, "box")          ? ASAM_PROMPT_BOX
           : !strcmp(s, "point")      ? ASAM_PROMPT_POINTS
           : !strcmp(s, "noise_mask") ? ASAM_PROMPT_MASK
                                      : 0;
}

static int hk_kind(void *u, int step, int k, int avail) {
    ref_state *R = u;
    const cJSON *c = at(R->kind, 2 * step + k);
    int want = 0;
    const cJSON *key;
    cJSON_ArrayForEach(key, at(c, 1)) want |= kind_bit(key->valuestring);
    CHECK(avail == want, "step %d image %d: prompt kinds %d, official input_keys %d (D8)", step, k,
          avail, want);
    return kind_bit(at(c, 0)->valuestring);
}

static void hk_points(void *u, int step, int mask, int n_fg, int n, int *idx) {
    ref_state *R = u;
    const cJSON *p = at(at(R->perm, step), mask);
    CHECK(cJSON_GetArraySize(p) >= n, "step %d mask %d: %d points asked", step, mask, n);
    const cJSON *fg = cJSON_GetObjectItemCaseSensitive(at(R->steps, step), "fg_px");
    CHECK(at(fg, mask) && n_fg == at(fg, mask)->valueint,
          "step %d mask %d: %d foreground pixels after the jitter, official %d", step, mask, n_fg,
          at(fg, mask) ? at(fg, mask)->valueint : -1);
    for (int j = 0; j < n; j++) idx[j] = at(p, j) ? at(p, j)->valueint : 0;
}

/* the script's counter-based draws: u24 and Irwin-Hall normals keyed by (step, which, mask) */
static void hk_draws(void *u, int step, int which, int mask, float *out, size_t n) {
    (void)u;
    uint64_t key = asam_mix64(((uint64_t)step << 40) | ((uint64_t)which << 32) | (uint64_t)mask);
    for (size_t i = 0; i < n; i++) {
        if (which == 3) {
            double s = 0;
            for (int j = 0; j < 12; j++)
                s += (double)(asam_mix64(key + (12 * i + j + 1) * ASAM_SPLITMIX_GAMMA) >> 40) *
                     0x1.0p-24;
            out[i] = (float)(s - 6.0);
        } else {
            out[i] = (float)((double)(asam_mix64(key + (i + 1) * ASAM_SPLITMIX_GAMMA) >> 40) *
                             0x1.0p-24);
        }
    }
}

static void hk_after(void *u, int step, double loss, asam_tensor *const *params) {
    ref_state *R = u;
    R->n_steps++;
    const cJSON *st = at(R->steps, step);
    CHECK(st != NULL, "step %d beyond the reference", step);
    if (!st) return;
    char w[128], name[64];
    snprintf(w, sizeof w, "step %d loss", step);
    double want = cJSON_GetObjectItemCaseSensitive(st, "loss")->valuedouble;
    REF_SCALAR(loss, want, 1e-4, w);
    R->worst_loss = fmax(R->worst_loss, fabs(loss - want) / fabs(want));
    const char *what[2] = {"iou", "mask"};
    const char *pname[2] = {"iou_token", "mask_tokens"};
    for (int p = 0; p < 2; p++) {
        size_t n;
        snprintf(name, sizeof name, "grad_%s_%d", what[p], step);
        float *g = ref_tensor("tune.safetensors", name, &n);
        CHECK(n == (size_t)params[p]->numel && params[p]->grad, "%s size", name);
        if (n == (size_t)params[p]->numel && params[p]->grad) {
            snprintf(w, sizeof w, "step %d d loss / d %s", step, pname[p]);
            REF_CLOSE(params[p]->grad, g, n, 1e-3, w);
            R->worst_grad = fmax(R->worst_grad, ref_rel(params[p]->grad, g, n));
        }
        free(g);
        snprintf(name, sizeof name, "%s_%d", pname[p], step);
        float *v = ref_tensor("tune.safetensors", name, &n);
        if (n == (size_t)params[p]->numel) {
            snprintf(w, sizeof w, "step %d %s after Adam", step, pname[p]);
            REF_CLOSE(params[p]->data, v, n, 1e-4, w);
            R->worst_param = fmax(R->worst_param, ref_rel(params[p]->data, v, n));
        }
        free(v);
    }
}

int main(void) {
    char sam[4096];
    if (test_data_file("sam_tiny/model.pth", sam, sizeof sam))
        TEST_SKIP("sam_tiny fixture not found (set ASAM_FIXTURES)");
    ref_state R = {0};
    R.j = ref_json("tune.json");
    R.steps = cJSON_GetObjectItemCaseSensitive(R.j, "steps");
    R.flip = cJSON_GetObjectItemCaseSensitive(R.j, "flip");
    R.lsj_u = cJSON_GetObjectItemCaseSensitive(R.j, "lsj_u");
    R.crop = cJSON_GetObjectItemCaseSensitive(R.j, "crop");
    R.kind = cJSON_GetObjectItemCaseSensitive(R.j, "kind");
    R.perm = cJSON_GetObjectItemCaseSensitive(R.j, "perm");
    asam_tune_hook hk = {.user = &R,
                         .order = hk_order,
                         .flip = hk_flip,
                         .lsj_u = hk_lsj_u,
                         .crop = hk_crop,
                         .kind = hk_kind,
                         .points = hk_points,
                         .draws = hk_draws,
                         .after_step = hk_after};
    char tmp[] = "/tmp/asam_ref_tune_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    char spec[4200];
    snprintf(spec, sizeof spec, "adv:%s/tune/adv:%s/tune/gt", REF_DIR, REF_DIR);
    const char *data[1] = {spec};
    asam_tune_opts o;
    asam_tune_defaults(&o);
    o.model_path = sam;
    o.data = data;
    o.n_data = 1;
    o.out_dir = tmp;
    o.epochs = 1;
    o.batch = 2;       /* the reference's rank batch: 2 images x 4 masks */
    o.point_group = 2; /* one rank */
    o.hook = &hk;
    asam_tune_report rep;
    int rc = asam_tune(&o, &rep);
    CHECK(rc == 0, "tune: %s", asam_last_error());
    CHECK(rep.n_images == 6, "%d images", rep.n_images);
    CHECK(R.n_steps == cJSON_GetArraySize(R.steps), "%d steps taken", R.n_steps);
    printf("     worst relative errors over the 3 steps: loss %.3g, gradients %.3g, tokens %.3g\n",
           R.worst_loss, R.worst_grad, R.worst_param);
    test_rm_rf(tmp);
    cJSON_Delete(R.j);
    return test_finish("test_asam_ref_tune");
}
