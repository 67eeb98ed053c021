/* The shared utilities (asam/util.h, asam/binder.h): clock, progress line, the pinned random
 * streams, mask -> box and the weight binder. */
#include <math.h>
#include "asam/binder.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/util.h"
#include "test_util.h"

static void test_clock(void) {
    double a = asam_now_s(), b = asam_now_s();
    CHECK(a > 0 && b >= a, "monotonic clock went back: %f -> %f", a, b);
    CHECK(asam_cpu_s() >= 0, "cpu clock");
    char buf[32];
    asam_fmt_hms(3725.4, buf, sizeof buf);
    CHECK(!strcmp(buf, "01:02:05"), "hms %s", buf);
    asam_fmt_hms(NAN, buf, sizeof buf);
    CHECK(!strcmp(buf, "00:00:00"), "hms of NaN %s", buf);
}

/* Runs updates into a temporary file and returns what was written. */
static void progress_text(int tty, int flags, int64_t every, char *out, size_t n) {
    asam_progress p;
    asam_progress_start(&p, "job", "img", 10, flags);
    p.tty = tty;
    p.every = every;
    p.word = "step";
    p.out = tmpfile();
    asam_progress_skip(&p);
    for (int i = 2; i <= 10; i++) asam_progress_update(&p, i, "loss %.1f", 0.5);
    asam_progress_end(&p);
    rewind(p.out);
    size_t k = fread(out, 1, n - 1, p.out);
    out[k] = 0;
    fclose(p.out);
}

static void test_progress(void) {
    char buf[4096];
    progress_text(0, 0, 0, buf, sizeof buf);
    CHECK(buf[0] == 0, "not a terminal, not asked: quiet, got '%s'", buf);
    progress_text(0, ASAM_PROGRESS_LOG, 0, buf, sizeof buf);
    CHECK(!strncmp(buf, "job: step 2/10  loss 0.5  ", 26), "log line: '%s'", buf);
    CHECK(strstr(buf, "ETA ") && strstr(buf, "img/s") && !strchr(buf, '\r'), "log: '%s'", buf);
    int lines = 0;
    for (char *c = buf; *c; c++) lines += *c == '\n';
    CHECK(lines == 9, "one line per update: %d", lines);
    progress_text(0, ASAM_PROGRESS_LOG, 4, buf, sizeof buf);
    CHECK(strstr(buf, " 4/10") && strstr(buf, " 8/10") && strstr(buf, " 10/10") &&
              !strstr(buf, " 5/10"),
          "every 4th and the last: '%s'", buf);
    progress_text(1, 0, 0, buf, sizeof buf);
    size_t len = strlen(buf);
    CHECK(buf[0] == '\r' && strstr(buf, "\033[K") && len > 0 && buf[len - 1] == '\n' &&
              !strstr(buf, "\033[K\n\r"),
          "terminal: rewritten in place, one newline at the end");
    progress_text(1, ASAM_PROGRESS_LINES, 0, buf, sizeof buf);
    CHECK(!strchr(buf, '\r') && strstr(buf, "job: step 10/10"), "terminal, full lines");
}

/* Values the tune/PGD stream, the diffusion noise and the splitmix64 keyed streams
 * (synthetic shards, random SAM/SD weights, ControlNet training draws, mask colours) had
 * before these generators were merged into util/rng.c; the demo's outputs depend on them. */
static void test_rng_pins(void) {
    uint64_t s = 0, a = asam_splitmix64(&s), b = asam_splitmix64(&s);
    CHECK(a == 0xe220a8397b1dcdafull && b == 0x6e789e6aa1b965f4ull, "splitmix64 reference");
    CHECK(asam_mix64(ASAM_SPLITMIX_GAMMA) == 0xe220a8397b1dcdafull, "mix64 = one splitmix step");
    const uint64_t want[3] = {0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull, 0xae17533239e499a1ull};
    asam_rng r;
    asam_rng_seed(&r, 42);
    for (int i = 0; i < 3; i++) CHECK(asam_rng_u64(&r) == want[i], "xoshiro256** draw %d", i);
    asam_rng_seed(&r, 7);
    CHECK(asam_rng_normal(&r) == -0.27902399102519809, "rng normal");
    const uint32_t wn[6] = {0xbf785e5cu, 0x3e46ace8u, 0xbf9e28d2u,
                            0x3ff6433bu, 0xbd95e030u, 0x3e0e7a0fu};
    float f[7];
    asam_randn(42, f, 6);
    for (int i = 0; i < 6; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        CHECK(u == wn[i], "philox normal %d: %08x", i, u);
    }
    float g[2];
    asam_randn(42, g, 1); /* element i does not depend on n */
    CHECK(g[0] == f[0], "randn prefix");
    CHECK(asam_u01(~0ull) < 1.0 && asam_u01(0) == 0.0, "u01 range");
}

/* asam_rng_shuffle: the permutation tune's epoch order has always used (pinned: moving it into
 * util must not change tuning), a permutation every time, and uniform: element 0 lands in each
 * of 4 places about as often. */
static void test_shuffle(void) {
    asam_rng r;
    asam_rng_seed(&r, 42);
    size_t o[10];
    asam_rng_shuffle(&r, o, 10);
    const size_t want[10] = {9, 1, 4, 2, 8, 7, 6, 5, 3, 0};
    int same = 1;
    for (int i = 0; i < 10; i++) same &= o[i] == want[i];
    CHECK(same, "shuffle of 10, seed 42: %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu", o[0], o[1], o[2],
          o[3], o[4], o[5], o[6], o[7], o[8], o[9]);
    int count[4] = {0}, perm_ok = 1;
    for (int k = 0; k < 20000; k++) {
        size_t q[4];
        asam_rng_shuffle(&r, q, 4);
        int seen = 0;
        for (int i = 0; i < 4; i++) {
            seen |= 1 << q[i];
            if (q[i] == 0) count[i]++;
        }
        perm_ok &= seen == 15;
    }
    CHECK(perm_ok, "every shuffle is a permutation");
    for (int i = 0; i < 4; i++)
        CHECK(count[i] > 4700 && count[i] < 5300, "element 0 at place %d: %d of 20000", i,
              count[i]);
    asam_rng_shuffle(&r, o, 0); /* n = 0 and 1: nothing to do, no draw */
    asam_rng_shuffle(&r, o, 1);
    CHECK(o[0] == 0, "shuffle of 1");
}

static void test_mask_box(void) {
    uint8_t m[5 * 4] = {0};
    float fm[5 * 4] = {0}, box[4];
    CHECK(asam_mask_box_u8(m, 5, 4, box) == 0 && box[0] == 5 && box[1] == 4 && box[2] == -1 &&
              box[3] == -1,
          "empty mask: (w, h, -1, -1)");
    m[1 * 5 + 3] = 7, m[2 * 5 + 1] = 1;
    CHECK(asam_mask_box_u8(m, 5, 4, box) == 2 && box[0] == 1 && box[1] == 1 && box[2] == 3 &&
              box[3] == 2,
          "u8 box %g %g %g %g", box[0], box[1], box[2], box[3]);
    fm[0] = 0.5f, fm[3 * 5 + 4] = 0.6f, fm[2 * 5 + 2] = 0.7f;
    CHECK(asam_mask_box_f32(fm, 5, 4, 0.5f, box) == 2 && box[0] == 2 && box[1] == 2 &&
              box[2] == 4 && box[3] == 3,
          "f32 box > 0.5");
    CHECK(asam_mask_box_f32(fm, 5, 4, 0.0f, box) == 3 && box[0] == 0 && box[1] == 0, "f32 box > 0");
}

static void zero_init(void *user, const char *name, asam_tensor *p) {
    (*(int *)user)++;
    for (int64_t i = 0; i < p->numel; i++) p->data[i] = 3.0f;
}

static void test_binder(void) {
    char path[64];
    snprintf(path, sizeof path, "test_util_shared_%d.safetensors", (int)getpid());
    const uint16_t half[6] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600}; /* 1..6 */
    const float w[4] = {1, 2, 3, 4};
    asam_st_entry e[2] = {
        {.name = "m.a.weight", .dtype = ASAM_DT_F16, .ndim = 2, .shape = {2, 3}, .data = half},
        {.name = "m.b.weight", .dtype = ASAM_DT_F32, .ndim = 4, .shape = {4, 1, 1, 1}, .data = w},
    };
    CHECK(asam_safetensors_write(path, e, 2, NULL, 0) == 0, "write: %s", asam_last_error());
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) {
        CHECK(0, "open: %s", asam_last_error());
        return;
    }
    asam_binder B;
    asam_binder_init(&B, ck, "m.");
    asam_tensor *a = asam_bindf(&B, 2, (const int64_t[]){2, 3}, "%s.weight", "a");
    CHECK(a && a->data[0] == 1 && a->data[5] == 6 && !strcmp(a->name, "a.weight"),
          "bind with prefix, f16 -> f32");
    CHECK(!asam_bind_opt(&B, "c.weight", 1, (const int64_t[]){4}) && !B.failed,
          "optional weight absent: no error");
    CHECK(!asam_bind(&B, "b.weight", 1, (const int64_t[]){4}) && B.failed &&
              strstr(asam_last_error(), path) && strstr(asam_last_error(), "'m.b.weight'") &&
              strstr(asam_last_error(), "(4, 1, 1, 1), expected (4)"),
          "exact shapes: %s", asam_last_error());
    CHECK(!asam_bind(&B, "a.weight", 2, (const int64_t[]){2, 3}), "failed binder stays failed");
    asam_binder_free(&B);

    asam_binder_init(&B, ck, "m.");
    B.loose_shape = 1;
    B.model = "TEST";
    asam_tensor *b = asam_bind(&B, "b.weight", 1, (const int64_t[]){4});
    CHECK(b && b->data[3] == 4, "loose shapes: trailing 1s");
    CHECK(!asam_bind(&B, "x", 1, (const int64_t[]){4}) &&
              strstr(asam_last_error(), "not a TEST checkpoint: missing tensor 'm.x'"),
          "missing: %s", asam_last_error());
    CHECK(B.n == 1 && B.params[0] == b && !strcmp(B.names[0], "b.weight"), "bound list");
    asam_binder_free(&B);
    asam_checkpoint_close(ck);
    remove(path);

    int calls = 0;
    asam_binder_init(&B, NULL, NULL);
    B.init = zero_init;
    B.user = &calls;
    asam_tensor *c = asam_bind(&B, "r", 2, (const int64_t[]){2, 2});
    CHECK(c && c->data[3] == 3.0f && calls == 1, "no file: init");
    asam_binder_free(&B);
}

/* Half conversions: every f16 value survives f16 -> f32 -> f16, float -> f16 rounds to the
 * nearest (ties to even) with overflow to infinity, bf16 likewise. */
static void test_half(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = asam_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (asam_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0, "f16 round trip: %d values changed", bad);
    CHECK(asam_f16_to_f32(0x3c00) == 1 && asam_f16_to_f32(0x7bff) == 65504 &&
              asam_f16_to_f32(0x0001) == ldexpf(1, -24),
          "f16 decoding");
    CHECK(asam_f32_to_f16(1 + ldexpf(1, -11)) == 0x3c00 &&
              asam_f32_to_f16(1 + 3 * ldexpf(1, -11)) == 0x3c02 &&
              asam_f32_to_f16(1 + ldexpf(1, -11) + ldexpf(1, -20)) == 0x3c01,
          "f16 rounding: ties to even, above a tie up");
    CHECK(asam_f32_to_f16(65520) == 0x7c00 && asam_f32_to_f16(65519) == 0x7bff &&
              asam_f32_to_f16(-1e30f) == 0xfc00 && asam_f32_to_f16(ldexpf(1, -26)) == 0,
          "f16 overflow and underflow");
    CHECK(isnan(asam_f16_to_f32(asam_f32_to_f16(NAN))), "f16 NaN");
    CHECK(asam_f32_to_bf16(1 + ldexpf(1, -8)) == 0x3f80 &&
              asam_f32_to_bf16(1 + 3 * ldexpf(1, -8)) == 0x3f82 &&
              asam_bf16_to_f32(0x4049) == 3.140625f &&
              isnan(asam_bf16_to_f32(asam_f32_to_bf16(NAN))),
          "bf16 rounding and NaN");
}

int main(void) {
    test_half();
    test_clock();
    test_progress();
    test_rng_pins();
    test_shuffle();
    test_mask_box();
    test_binder();
    return test_finish("test_util_shared");
}
