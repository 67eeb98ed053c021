/* exp over 16 floats with AVX-512, shared by attention's flash kernels (gemm_tile.c for fp32,
 * amx_tile.c for bf16) so both softmaxes compute the same values. Internal to src/engine;
 * callers compile it under their own AVX-512 target attribute and check the CPU first. */
#ifndef ASAM_ENGINE_EXP_AVX512_H
#define ASAM_ENGINE_EXP_AVX512_H

#include <immintrin.h>
#include <stdint.h>

/* exp(x) for x <= 0 (softmax logits minus their max): Cephes' range reduction and polynomial,
 * as exp_fast in op_attention.c (~2 ulp), 2^n applied by VSCALEFPS; x < -87 (and -inf) gives
 * exactly 0, as exp_fast does. */
__attribute__((target("avx512f"))) static inline __m512 asam_exp16(__m512 x) {
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(live, y, n);
}

/* 2^t to about 7.5e-5 relative error, for the bf16 kernels, whose probabilities are rounded to
 * bf16 (2^-9) anyway: f = t - floor(t) by VREDUCEPS, a degree-3 fit of 2^f on [0, 1) (relative
 * error minimised), and VSCALEFPS multiplies by 2^floor(t) itself: 6 instructions (the
 * earlier degree-4 form on [-1/2, 1/2] took 8, with rounding and a subtraction to find the
 * integer part). Callers form t = x log2(e) with one FMA. t < -125 (and -inf, NaN) gives
 * exactly 0. */
#define ASAM_LOG2E 1.44269504088896341f
__attribute__((target("avx512f,avx512dq"))) static inline __m512 asam_exp2_16_bf16(__m512 t) {
    __mmask16 live = _mm512_cmp_ps_mask(t, _mm512_set1_ps(-125.0f), _CMP_GE_OQ);
    __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_set1_ps(0.07802403718233109f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.22606708109378815f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6958339810371399f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.9999251365661621f));
    return _mm512_maskz_scalef_ps(live, p, t);
}

/* The mask of the first n (0 .. 16) lanes. */
static inline __mmask16 asam_lanes16(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
}

#endif
