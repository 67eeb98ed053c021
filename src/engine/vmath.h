/* Vectorisable math shared by the engine's elementwise loops (activations, fused norms), so
 * a fused op computes bit for bit what the separate ops compute. Internal to src/engine. */
#ifndef ASAM_ENGINE_VMATH_H
#define ASAM_ENGINE_VMATH_H

#include <stdint.h>

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

/* SiLU x * sigmoid(x), in the activation op's exact form. */
static inline float silu_vec(float x) {
    return x * (1.0f / (1.0f + exp_vec(-x)));
}

#endif
