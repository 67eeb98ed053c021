/* The random-number generators: splitmix64 (the one mixing primitive and keyed streams),
 * xoshiro256** (sequential draws of tuning and PGD) and Philox-4x32-10 normals (diffusion
 * noise). Every stream is pinned by tests or by the demo's outputs: change nothing here
 * without regenerating them. */
#include "asam/util.h"

#include <math.h>

/* ---- splitmix64 ---------------------------------------------------------------------------- */
uint64_t asam_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t asam_splitmix64(uint64_t *state) {
    return asam_mix64(*state += ASAM_SPLITMIX_GAMMA);
}

/* ---- xoshiro256** ------------------------------------------------------------------------ */
void asam_rng_seed(asam_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = asam_splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t asam_rng_u64(asam_rng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double asam_rng_uniform(asam_rng *r) {
    return asam_u01(asam_rng_u64(r));
}

int asam_rng_int(asam_rng *r, int n) {
    return n <= 1 ? 0 : (int)(asam_rng_uniform(r) * n) % n;
}

void asam_rng_shuffle(asam_rng *r, size_t *order, size_t n) {
    for (size_t i = 0; i < n; i++) order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(asam_rng_uniform(r) * (double)i);
        if (j >= i) j = i - 1;
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

double asam_rng_normal(asam_rng *r) {
    double u1 = asam_rng_uniform(r), u2 = asam_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

/* ---- Philox-4x32-10 + Box-Muller ------------------------------------------------------------ */
/* ref: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), Philox4x32-10:
 * the round constants and Weyl key increments below are the paper's. */
static void philox4x32(uint32_t ctr[4], uint32_t key0, uint32_t key1) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)M0 * ctr[0], p1 = (uint64_t)M1 * ctr[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ ctr[1] ^ key0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ ctr[3] ^ key1, n3 = (uint32_t)p0;
        ctr[0] = n0, ctr[1] = n1, ctr[2] = n2, ctr[3] = n3;
        key0 += W0, key1 += W1;
    }
}

void asam_randn(uint64_t seed, float *out, size_t n) {
    /* Block j (counter (j, 0, 0, 0)) gives 4 uniforms -> 4 normals (two Box-Muller pairs);
     * element i comes from block i/4, so any element can be computed independently. */
    for (size_t j = 0; j * 4 < n; j++) {
        uint32_t c[4] = {(uint32_t)j, (uint32_t)((uint64_t)j >> 32), 0, 0};
        philox4x32(c, (uint32_t)seed, (uint32_t)(seed >> 32));
        for (int p = 0; p < 2; p++) {
            /* uniforms in (0, 1] and [0, 1) from 32 bits each */
            double u1 = ((double)c[2 * p] + 1.0) / 4294967296.0;
            double u2 = (double)c[2 * p + 1] / 4294967296.0;
            double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
            size_t i = j * 4 + (size_t)p * 2;
            if (i < n) out[i] = (float)(r * cos(th));
            if (i + 1 < n) out[i + 1] = (float)(r * sin(th));
        }
    }
}
