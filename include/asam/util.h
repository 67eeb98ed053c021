/* Small shared utilities, below every other layer (engine, io, models, diffusion, asam, cli
 * all use them): a monotonic clock, the progress/ETA line of long jobs, the random-number
 * generators, and the tight bounding box of a mask. One copy of each; nothing here allocates.
 */
#ifndef ASAM_UTIL_H
#define ASAM_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- clock -------------------------------------------------------------------------------- */
/* Seconds on the monotonic clock (differences only; never goes back). */
double asam_now_s(void);
/* CPU seconds used by this process (all threads), for CPU/wall ratios. */
double asam_cpu_s(void);

/* ---- progress / ETA line ------------------------------------------------------------------ */
/* One line per update on stderr:
 *     LABEL: [WORD ]DONE/TOTAL[  DETAIL]  RATE  ETA hh:mm:ss
 * RATE is "x.xx UNIT/s" when at least one item a second is done, otherwise "x.xx s/UNIT";
 * it and the ETA count only the items done by this run (resumed or skipped ones are left out
 * with asam_progress_skip), so a resumed job does not claim a rate it never had.
 *
 * Where the line goes: on a terminal it is rewritten in place ("\r...\033[K"), unless
 * ASAM_PROGRESS_LINES asks for one full line per update. When stderr is not a terminal the
 * formatter is quiet (a log file gets no hundreds of carriage returns) unless ASAM_PROGRESS_LOG
 * asks for full lines, then every `every`-th update and the last one. */
enum {
    ASAM_PROGRESS_LOG = 1,   /* also when stderr is not a terminal (full lines) */
    ASAM_PROGRESS_LINES = 2, /* full lines on a terminal too (output interleaved with others) */
};

typedef struct {
    char label[64];
    const char *word; /* before the count ("step" -> "step 3/50"), or NULL */
    const char *unit; /* rate unit ("img", "step") */
    int64_t total;
    int64_t skipped; /* items that cost no time (already done in an earlier run) */
    int64_t every;   /* not a terminal: print every N-th update (<= 1: each one) */
    int flags;       /* ASAM_PROGRESS_* */
    int tty;         /* stderr is a terminal (set by asam_progress_start) */
    int open;        /* a rewritten line is on the terminal without its '\n' */
    double t0;
    FILE *out; /* stderr (tests point it elsewhere) */
} asam_progress;

/* label: printf-style prefix ("tune", "eval: model on data"); unit as above; total items. */
void asam_progress_start(asam_progress *p, const char *label, const char *unit, int64_t total,
                         int flags);
/* One item that took no time (skipped/resumed): counted in DONE, not in the rate. */
void asam_progress_skip(asam_progress *p);
/* Items done so far (including skipped ones); detail: printf-style text or NULL. */
void asam_progress_update(asam_progress *p, int64_t done, const char *detail, ...)
    __attribute__((format(printf, 3, 4)));
/* Ends a line left open on the terminal (call before printing anything else, and at the end). */
void asam_progress_end(asam_progress *p);
/* Would an update print anything? (lets callers skip computing an expensive DETAIL) */
int asam_progress_visible(const asam_progress *p);
/* "hh:mm:ss" of s seconds (rounded; negative, NaN or absurd values print 00:00:00). */
void asam_fmt_hms(double s, char *buf, size_t n);

/* ---- random numbers ----------------------------------------------------------------------- */
/* splitmix64 (Steele, Lea & Flood 2014): the one mixing primitive. Keyed streams (a value per
 * pixel, per colour index, per training sample) use it directly; the sequential generator
 * below is seeded with it. */
#define ASAM_SPLITMIX_GAMMA 0x9E3779B97F4A7C15ull
/* The output function alone: a bijective 64-bit hash. */
uint64_t asam_mix64(uint64_t z);
/* The generator: advance *state by the gamma, return the mixed state. */
uint64_t asam_splitmix64(uint64_t *state);
/* [0, 1) with 53 random bits (the top 53 of x), exactly representable. */
static inline double asam_u01(uint64_t x) {
    return (double)(x >> 11) * 0x1.0p-53;
}

/* Sequential generator: xoshiro256** (Blackman & Vigna), seeded by four splitmix64 draws.
 * Tuning and PGD draw from it; its state is saved for exact resumes. */
typedef struct {
    uint64_t s[4];
} asam_rng;
void asam_rng_seed(asam_rng *r, uint64_t seed); /* splitmix64 expansion */
uint64_t asam_rng_u64(asam_rng *r);
double asam_rng_uniform(asam_rng *r); /* [0, 1), 53 bits */
int asam_rng_int(asam_rng *r, int n); /* [0, n) */
/* order[0..n) = a uniformly random permutation of 0..n-1 (Fisher-Yates, one uniform per swap). */
void asam_rng_shuffle(asam_rng *r, size_t *order, size_t n);
double asam_rng_normal(asam_rng *r); /* N(0, 1), Box-Muller (no cached spare) */

/* Deterministic standard normal noise: counter-based Philox-4x32-10 keyed by the 64-bit seed,
 * counter (i/4, 0, 0, 0) for element i, its four 32-bit outputs turned into four normals by
 * Box-Muller (u1 = (c0+1)/2^32, u2 = c1/2^32 -> r cos, r sin; same for c2, c3). Independent
 * of threads and platform. The diffusion latents and training noise come from here. */
void asam_randn(uint64_t seed, float *out, size_t n);

/* ---- half precision ----------------------------------------------------------------------- */
/* IEEE binary16 and bfloat16 <-> float, rounding to nearest even (NaN stays NaN, overflow goes
 * to infinity, f16 subnormals kept): how checkpoints are read and written in F16/BF16. */
float asam_f16_to_f32(uint16_t h);
uint16_t asam_f32_to_f16(float f);
/* bf16 is the top half of a float: inline, as the engine's packing loops use them per value. */
static inline float asam_bf16_to_f32(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    __builtin_memcpy(&f, &b, 4);
    return f;
}
static inline uint16_t asam_f32_to_bf16(float f) {
    uint32_t x;
    __builtin_memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- memory ------------------------------------------------------------------------------- */
/* Bytes of memory available to start new work without swapping (Linux MemAvailable; elsewhere
 * free physical pages); 0 when unknown. */
size_t asam_mem_available(void);

/* ---- mask -> box -------------------------------------------------------------------------- */
/* Tight box (x0, y0, x1, y1) of a w x h mask, max inclusive as torchvision's masks_to_boxes.
 * Returns the number of foreground pixels; when there are none the box is (w, h, -1, -1). */
int64_t asam_mask_box_u8(const uint8_t *m, int w, int h, float box[4]); /* pixels != 0 */
int64_t asam_mask_box_f32(const float *m, int w, int h, float thresh,   /* pixels > thresh */
                          float box[4]);

#ifdef __cplusplus
}
#endif
#endif
