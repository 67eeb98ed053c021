/* The kernel tables (see backend.h) and the precision switch.
 *
 * CPU fp32: OpenBLAS sgemm, exactly what the ops called before the seam existed.
 * CPU bf16: oneDNN's bf16 matmul when the build has oneDNN (it uses AMX tiles where the CPU has
 * them, else AVX512-BF16), else our AVX512-BF16 micro-kernel (gemm_bf16.c). Chosen at run time:
 * bf16 is refused on a CPU without AVX512-BF16 (every CPU with AMX has it). The environment
 * variable ASAM_BF16_KERNEL=avx512 forces our kernel even when oneDNN is there (for tests and
 * benchmarks comparing the two). */
#include "engine/backend.h"
#include "engine/gemm_bf16.h"
#ifdef ASAM_HAVE_ONEDNN
#include "engine/gemm_onednn.h"
#endif
#include "asam/error.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Products below this many multiply-adds stay in fp32 under bf16 too: packing and conversion
 * would cost more than the product (and fp32 is the more accurate of the two). */
#define BF16_MIN_MACS (INT64_C(1) << 12)

static void gemm_fp32(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* A bf16 kernel that fails (out of memory, oneDNN refusing a shape) leaves C untouched, so the
 * product is then done in fp32: slower, never wrong. */
static void gemm_bf16_own(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                          float *C, int64_t ldc) {
    if (M * N * K < BF16_MIN_MACS ||
        asam_gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        gemm_fp32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static const asam_backend cpu_fp32 = {"cpu-fp32 (OpenBLAS sgemm)", ASAM_FP32, gemm_fp32};
static const asam_backend cpu_bf16_own = {"cpu-bf16 (AVX512-BF16 micro-kernel)", ASAM_BF16,
                                          gemm_bf16_own};

#ifdef ASAM_HAVE_ONEDNN
static void gemm_bf16_onednn(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc) {
    if (M * N * K < BF16_MIN_MACS ||
        asam_gemm_onednn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        gemm_bf16_own(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static const asam_backend cpu_bf16_onednn = {"cpu-bf16 (oneDNN)", ASAM_BF16, gemm_bf16_onednn};
#endif

const asam_backend *asam_backend_current = &cpu_fp32;

int asam_bf16_supported(void) {
    return asam_gemm_bf16_supported();
}

int asam_set_precision(asam_precision p) {
    if (p == ASAM_FP32) {
        asam_backend_current = &cpu_fp32;
        return 0;
    }
    if (p != ASAM_BF16) return asam_error("precision: unknown precision %d", (int)p);
    if (!asam_bf16_supported())
        return asam_error("precision bf16: this CPU has no AVX512-BF16 (nor AMX)");
    asam_backend_current = &cpu_bf16_own;
#ifdef ASAM_HAVE_ONEDNN
    const char *force = getenv("ASAM_BF16_KERNEL");
    if (!(force && !strcmp(force, "avx512"))) asam_backend_current = &cpu_bf16_onednn;
#endif
    return 0;
}

asam_precision asam_get_precision(void) {
    return asam_backend_current->precision;
}

int asam_precision_parse(const char *s, asam_precision *p) {
    if (s && !strcmp(s, "fp32")) return *p = ASAM_FP32, 0;
    if (s && !strcmp(s, "bf16")) return *p = ASAM_BF16, 0;
    return -1;
}

const char *asam_precision_name(asam_precision p) {
    return p == ASAM_BF16 ? "bf16" : "fp32";
}

const char *asam_backend_describe(void) {
#ifdef ASAM_HAVE_ONEDNN
    if (asam_backend_current == &cpu_bf16_onednn) {
        static char buf[192];
        const char *impl = asam_onednn_impl();
        snprintf(buf, sizeof buf, "cpu-bf16 (oneDNN %s)",
                 impl ? impl : "unavailable: AVX512-BF16 micro-kernel");
        return buf;
    }
#endif
    return asam_backend_current->name;
}
