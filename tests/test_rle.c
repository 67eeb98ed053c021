/* COCO RLE against pycocotools 2.0.11: the expected strings, boxes, areas and polygon
 * rasters below were produced by pycocotools.mask (encode / toBbox / area / frPyObjects +
 * merge) on the same masks and polygons. */
#include "asam/error.h"
#include "asam/rle.h"
#include "test_util.h"

#include <stdint.h>

/* Deterministic test mask (the same formula generated the pycocotools references). */
static uint8_t *formula_mask(int h, int w, int k) {
    uint8_t *m = malloc((size_t)h * w);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            m[y * w + x] =
                (uint8_t)((((x * 7 + y * 13 + k) % 11) < 4) ^ ((x > w / 3) && (y < 2 * h / 3)));
    return m;
}

static void check_against(const char *name, const uint8_t *mask, int h, int w, const char *s,
                          const double bb[4], uint64_t area) {
    int failures_before = test_failures;
    asam_rle r, p;
    CHECK(asam_rle_encode(mask, h, w, &r) == 0, "%s: encode", name);
    char *enc = asam_rle_to_string(&r);
    CHECK(enc && strcmp(enc, s) == 0, "%s: string %s != pycocotools %s", name, enc, s);
    CHECK(asam_rle_from_string(s, h, w, &p) == 0, "%s: parse: %s", name, asam_last_error());
    CHECK(p.n == r.n && memcmp(p.counts, r.counts, r.n * sizeof(uint32_t)) == 0,
          "%s: parsed counts differ", name);
    uint8_t *dec = malloc((size_t)h * w + 1);
    CHECK(asam_rle_decode(&p, dec) == 0 && memcmp(dec, mask, (size_t)h * w) == 0,
          "%s: decode differs", name);
    double b[4];
    asam_rle_bbox(&p, b);
    CHECK(b[0] == bb[0] && b[1] == bb[1] && b[2] == bb[2] && b[3] == bb[3],
          "%s: bbox [%g %g %g %g] != [%g %g %g %g]", name, b[0], b[1], b[2], b[3], bb[0], bb[1],
          bb[2], bb[3]);
    CHECK(asam_rle_area(&p) == area, "%s: area %llu != %llu", name,
          (unsigned long long)asam_rle_area(&p), (unsigned long long)area);
    if (test_failures == failures_before) printf("ok   %s (%dx%d, %zu runs)\n", name, h, w, r.n);
    free(dec);
    free(enc);
    asam_rle_free(&r);
    asam_rle_free(&p);
}

static void test_known_masks(void) {
    static const struct {
        int h, w, k;
        const char *s;
        double bb[4];
        uint64_t area;
    } cases[] = {
        {23,
         17,
         0,
         "0240O010OOO120O010NO1110O010M02010O040L010O0OO21O010O1O10O0N1101O10OON31O1O10NO031N0"
         "013NN2OO031L02OO0O0011O10O4OM1O1012NN0010M0121N001OM2102OO00OO20",
         {0, 0, 17, 23},
         188},
        {5, 4, 3, "0130N113OM1", {0, 0, 4, 5}, 11},
        {1, 30, 1, "0120O0100000O0100000O01", {0, 0, 28, 1}, 11},
        {40, 1, 2, "0141O010O010O010", {0, 0, 1, 40}, 15},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *m = formula_mask(cases[i].h, cases[i].w, cases[i].k);
        char name[64];
        snprintf(name, sizeof name, "formula mask %zu", i);
        check_against(name, m, cases[i].h, cases[i].w, cases[i].s, cases[i].bb, cases[i].area);
        free(m);
    }
    uint8_t m[100];
    memset(m, 0, 63);
    check_against("empty 7x9", m, 7, 9, "o1", (double[4]){0, 0, 0, 0}, 0);
    memset(m, 1, 63);
    check_against("full 7x9", m, 7, 9, "0o1", (double[4]){0, 0, 9, 7}, 63);
    /* one run crossing a column boundary: the box spans the full height */
    memset(m, 0, 100);
    m[8 * 10 + 2] = m[9 * 10 + 2] = 1;
    m[0 * 10 + 3] = m[1 * 10 + 3] = m[2 * 10 + 3] = 1;
    check_against("run across columns", m, 10, 10, "l05S2", (double[4]){2, 0, 2, 10}, 5);

    /* 3000x3000 with multi-character and negative differences */
    int H = 3000, W = 3000;
    uint8_t *big = calloc((size_t)H * W, 1);
    for (int y = 1000; y < 2000; y++) memset(big + (size_t)y * W + 1200, 1, 1700);
    big[5 * W + 5] = 1;
    size_t nz = 3418 - 17 - 4;
    char *s = malloc(3419);
    memcpy(s, "md>1Zn]]3Wo0VPdbL", 17);
    memset(s + 17, '0', nz);
    memcpy(s + 17 + nz, "hoS9", 5);
    check_against("3000x3000", big, H, W, s, (double[4]){5, 5, 2895, 1995}, 1700001);
    free(s);
    free(big);

    /* uncompressed counts with empty runs */
    uint32_t c[5] = {0, 5, 0, 3, 92};
    asam_rle r;
    CHECK(asam_rle_from_counts(c, 5, 10, 10, &r) == 0, "from_counts: %s", asam_last_error());
    char *e = asam_rle_to_string(&r);
    CHECK(e && strcmp(e, "050Nl2") == 0, "uncompressed -> string %s", e);
    double b[4];
    asam_rle_bbox(&r, b);
    CHECK(b[0] == 0 && b[1] == 0 && b[2] == 1 && b[3] == 8, "uncompressed bbox");
    CHECK(asam_rle_area(&r) == 8, "uncompressed area");
    free(e);
    asam_rle_free(&r);
    uint32_t bad[3] = {10, 5, 84};
    CHECK(asam_rle_from_counts(bad, 3, 10, 10, &r) == -1, "counts summing to 99 accepted");
}

static void test_polygons(void) {
    static const double tri[] = {1.0, 1.0, 15.3, 2.2, 7.7, 12.9};
    static const double concave[] = {2, 2, 18, 2, 18, 14, 10, 6, 2, 14};
    static const double outside[] = {-3.5, -2, 25, 4, 12.25, 30};
    static const double two_a[] = {1, 1, 6, 1, 6, 6, 1, 6}, two_b[] = {4.5, 4.5, 12, 5, 9, 11.5};
    static const double dup[] = {3, 3, 3, 3, 10, 3, 10, 10, 3.1, 10.2};
    static const double thin[] = {0.4, 0.4, 19.6, 0.4, 19.6, 0.6};
    static const struct {
        const char *name;
        const double *p[2];
        size_t len[2], n;
        const char *s;
        double bb[4];
        uint64_t area;
    } cases[] = {
        {"triangle", {tri}, {6}, 1, "a01?2N1O2N2N2O0O00N2O1O1N2O1N`2", {1, 1, 14, 11}, 81},
        {"concave", {concave}, {10}, 1, "R1;5O1O1O1O1O1O1O1001O1O1O1O1O1O1m0", {2, 2, 16, 11}, 120},
        {"outside",
         {outside},
         {6},
         1,
         "06:2N2N2N2NR1OoN000000001O000000001O0ON",
         {0, 0, 20, 16},
         268},
        {"two merged", {two_a, two_b}, {8, 6}, 2, "a05;00000004NN1O2NO1N2Nm3", {1, 1, 11, 10}, 47},
        {"repeated vertex", {dup}, {10}, 1, "c17900000000000m4", {3, 3, 7, 7}, 49},
        {"thin", {thin}, {6}, 1, "P51?000000000000000000", {10, 0, 10, 1}, 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        asam_rle r;
        int rc = asam_rle_from_polygons(cases[i].p, cases[i].len, cases[i].n, 16, 20, &r);
        CHECK(rc == 0, "%s: %s", cases[i].name, asam_last_error());
        if (rc) continue;
        char *s = asam_rle_to_string(&r);
        double b[4];
        asam_rle_bbox(&r, b);
        int ok = s && strcmp(s, cases[i].s) == 0 && asam_rle_area(&r) == cases[i].area &&
                 b[0] == cases[i].bb[0] && b[1] == cases[i].bb[1] && b[2] == cases[i].bb[2] &&
                 b[3] == cases[i].bb[3];
        CHECK(ok, "polygon %s: %s != pycocotools %s", cases[i].name, s, cases[i].s);
        if (ok) printf("ok   polygon %s\n", cases[i].name);
        free(s);
        asam_rle_free(&r);
    }
    asam_rle r;
    const double *p1[1] = {tri};
    size_t l4[1] = {4}, l7[1] = {7};
    CHECK(asam_rle_from_polygons(p1, l4, 1, 16, 20, &r) == -1, "4-number polygon accepted");
    CHECK(asam_rle_from_polygons(p1, l7, 1, 16, 20, &r) == -1, "odd polygon accepted");
    static const double huge[] = {0, 0, 1e300, 0, 0, 5};
    const double *p2[1] = {huge};
    size_t l6[1] = {6};
    CHECK(asam_rle_from_polygons(p2, l6, 1, 16, 20, &r) == -1, "1e300 coordinate accepted");
    static const double nan_[] = {0, 0, NAN, 0, 0, 5};
    p2[0] = nan_;
    CHECK(asam_rle_from_polygons(p2, l6, 1, 16, 20, &r) == -1, "NaN coordinate accepted");
}

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static void test_random_round_trips(void) {
    int fails = 0;
    for (int it = 0; it < 300; it++) {
        int h = 1 + rng() % 70, w = 1 + rng() % 70;
        if (it % 50 == 0) h = 1 + rng() % 1500, w = 1 + rng() % 1500; /* long runs */
        uint8_t *m = malloc((size_t)h * w), *d = malloc((size_t)h * w);
        /* runs of random length so counts vary from 1 to thousands */
        uint8_t v = rng() & 1;
        for (size_t i = 0; i < (size_t)h * w;) {
            size_t len = 1 + (rng() % 4 == 0 ? rng() % 3000 : rng() % 5);
            for (size_t j = 0; j < len && i < (size_t)h * w; j++, i++) m[i] = v;
            v = !v;
        }
        asam_rle r, p;
        int ok = asam_rle_encode(m, h, w, &r) == 0;
        char *s = ok ? asam_rle_to_string(&r) : NULL;
        ok = ok && s && asam_rle_from_string(s, h, w, &p) == 0;
        ok = ok && p.n == r.n && memcmp(p.counts, r.counts, r.n * 4) == 0;
        ok = ok && asam_rle_decode(&p, d) == 0 && memcmp(d, m, (size_t)h * w) == 0;
        uint64_t area = 0;
        for (size_t i = 0; i < (size_t)h * w; i++) area += m[i];
        ok = ok && asam_rle_area(&p) == area;
        if (!ok) fails++;
        if (s) asam_rle_free(&p);
        free(s);
        asam_rle_free(&r);
        free(m);
        free(d);
    }
    CHECK(fails == 0, "%d of 300 random round trips failed", fails);
    if (!fails) printf("ok   300 random encode/string/parse/decode round trips\n");
}

static void test_bad_strings(void) {
    static const struct {
        const char *s;
        int h, w;
        const char *why;
    } bad[] = {
        {"o1 ", 7, 9, "space"},
        {"o1p", 7, 9, "character above 'o'"},
        {"/o1", 7, 9, "character below '0'"},
        {"o\x80", 7, 9, "high byte"},
        {"o1a", 7, 9, "ends inside a value"},
        {"o", 7, 9, "ends inside a value (continuation)"},
        {"n1", 7, 9, "sum 62 != 63"},
        {"O", 7, 9, "negative first count"},
        {"0O", 7, 9, "negative second count"},
        {"ooooooo1", 7, 9, "value longer than 7 characters"},
        {"ooooooO", 100000, 100000, "huge negative"},
        {"o1o1", 7, 9, "sum exceeds h*w"},
        {"", 7, 9, "empty string for a non-empty mask"},
        {"0000000", 7, 9, "all-zero runs"},
        {"o101N", 7, 9, "negative difference"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        asam_rle r;
        int rc = asam_rle_from_string(bad[i].s, bad[i].h, bad[i].w, &r);
        CHECK(rc == -1 && strstr(asam_last_error(), "rle"), "%s ('%s') accepted", bad[i].why,
              bad[i].s);
        if (rc == 0) asam_rle_free(&r);
    }
    asam_rle r;
    /* 'o' = 63 carries the continuation bit: "o1" is one count (63), "o10" = 63 then 0 */
    CHECK(asam_rle_from_string("o10", 7, 9, &r) == 0 && r.n == 2 && r.counts[0] == 63 &&
              r.counts[1] == 0,
          "o10: %s", asam_last_error());
    asam_rle_free(&r);
    CHECK(asam_rle_from_string("", 0, 5, &r) == 0 && r.n == 0, "empty 0x5 mask: %s",
          asam_last_error());
    asam_rle_free(&r);
    CHECK(asam_rle_from_string("o1", -7, 9, &r) == -1, "negative height accepted");
    /* an RLE whose counts disagree with its size must not write out of bounds */
    uint32_t c[2] = {60, 10};
    asam_rle fake = {7, 9, 2, c};
    uint8_t m[63];
    CHECK(asam_rle_decode(&fake, m) == -1, "decode of inconsistent RLE succeeded");
    printf("ok   %zu malformed strings rejected\n", sizeof bad / sizeof bad[0]);
}

int main(void) {
    test_known_masks();
    test_polygons();
    test_random_round_trips();
    test_bad_strings();
    return test_finish("test_rle");
}
