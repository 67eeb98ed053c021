/* Vectorisable math shared by the engine's elementwise loops (activations, fused norms), so
 * a fused op computes bit for bit what the separate ops compute. Internal to src/engine. */
#ifndef ASAM_ENGINE_VMATH_H
#define ASAM_ENGINE_VMATH_H

#include <stdint.h>

/* For the loops over these functions: 16 lanes where the CPU has AVX-512 (the compiler's
 * default for -march=native on AVX-512 CPUs is 8). Each lane computes the same as any other
 * width, so the fused and the separate ops keep their common bits. */
#define VMATH_WIDE __attribute__((target("prefer-vector-width=512")))

/* exp for the activation loops, written so the compiler vectorises it (libm's expf and erff
 * are scalar calls): Cody-Waite reduction x = n ln2 + r, the cephes expf polynomial for e^r
 * (about 1 ulp), 2^n built in the exponent bits. Inputs are clamped to the finite range. */
static inline float exp_vec(float x) {
    x = x < -87.33654f ? -87.33654f : (x > 88.0f ? 88.0f : x);        /* keeps 2^n finite */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } e = {.i = ((int32_t)n + 127) << 23};
    return p * e.f;
}

#define INV_SQRT2 0.70710678118654752440f

/* erfc with relative error about 1e-7 everywhere (Chebyshev fit, Numerical Recipes'
 * erfcc), so 0.5 x erfc(-x/sqrt2) keeps GELU's tiny negative tail accurate too. */
static inline float erfc_vec(float y) {
    float z = y < 0 ? -y : y;
    float t = 1.0f / (1.0f + 0.5f * z);
    float q = -0.82215223f + t * 0.17087277f;
    q = 1.48851587f + t * q;
    q = -1.13520398f + t * q;
    q = 0.27886807f + t * q;
    q = -0.18628806f + t * q;
    q = 0.09678418f + t * q;
    q = 0.37409196f + t * q;
    q = 1.00002368f + t * q;
    q = -1.26551223f + t * q;
    float ans = t * exp_vec(-z * z + q);
    return y >= 0 ? ans : 2.0f - ans;
}

/* GELU, the erf form x Phi(x) = 0.5 x erfc(-x / sqrt 2): the activation op's (and GEGLU's and the
 * AMX linear's fused GEGLU) exact form. */
static inline float gelu_vec(float x) {
    return 0.5f * x * erfc_vec(-x * INV_SQRT2);
}

/* SiLU x * sigmoid(x), in the activation op's exact form. */
static inline float silu_vec(float x) {
    return x * (1.0f / (1.0f + exp_vec(-x)));
}

#endif
