/* F(4x4, 3x3) Winograd convolution (conv_winograd.h). With d a 6x6 input patch and g a 3x3
 * kernel, the 4x4 output tile is A^T [(G g G^T) . (B^T d B)] A, where
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * (Lavin & Gray 2016, interpolation points 0, +-1, +-2, infinity). The element-wise product
 * summed over input channels is, for each of the 36 positions xi, a GEMM
 * M[xi] (O, T) = U[xi] (O, C) V[xi] (C, T) over the T tiles, in fp32 under either precision
 * (backend.h: rounding U and V to bf16 tripled the bf16 error of SAM's neck); tiles are taken in
 * chunks so the transformed input V and product M stay under 64 MiB whatever the image size. */
#include "engine/conv_winograd.h"

#include "engine/backend.h"
#include "engine/blas.h"
#include "engine/engine_internal.h"
#include "engine/gemm_tile.h"

#include <omp.h>
#include <stdint.h>
#ifdef __SSE__
#include <xmmintrin.h>
#endif
#include <string.h>

/* Scratch cap in floats (64 MiB) for one chunk's V and M together; 8-16 Mi floats measured
 * fastest on the VAE's 128- and 512-channel convolutions (bench engine) (not static: tests shrink
 * it to exercise the chunking; declared there, not in a header: it is no API). */
int64_t asam_wino_chunk_floats = (int64_t)16 << 20;

#define TG 16 /* tiles (or kernels) transformed together: one vector of 16 floats per position */

/* One dimension of G g for a kernel row or column (g0, g1, g2) -> 6 values. */
static inline void g_row(float g0, float g1, float g2, float *r) {
    r[0] = g0 * 0.25f;
    r[1] = -(g0 + g1 + g2) / 6.0f;
    r[2] = -(g0 - g1 + g2) / 6.0f;
    r[3] = g0 / 24.0f + g1 / 12.0f + g2 / 6.0f;
    r[4] = g0 / 24.0f - g1 / 12.0f + g2 / 6.0f;
    r[5] = g2;
}

void asam_wino_weights(const float *w, int64_t O, int64_t C, int adjoint, float *U) {
    /* adjoint: U is (36, C, O) and its kernel [c][o] is w[o][c] rotated by 180 degrees.
     * TG kernels of one row at a time, lane by lane (the loops vectorise, divisions included),
     * so each of the 36 positions gets TG contiguous values. */
    int64_t rows = adjoint ? C : O, cols = adjoint ? O : C, plane = O * C;
#pragma omp parallel for schedule(static) if (plane >= 4096)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += TG) {
            int64_t n = cols - c0 < TG ? cols - c0 : TG;
            float g[9][TG], t[6][3][TG], u[36][TG];
            for (int64_t l = 0; l < TG; l++) {
                int64_t c = c0 + (l < n ? l : 0);
                const float *k = adjoint ? w + (c * C + r) * 9 : w + (r * C + c) * 9;
                for (int i = 0; i < 9; i++) g[i][l] = adjoint ? k[8 - i] : k[i];
            }
            for (int j = 0; j < 3; j++) /* G g: columns of g */
                for (int l = 0; l < TG; l++) {
                    float col[6];
                    g_row(g[j][l], g[3 + j][l], g[6 + j][l], col);
                    for (int i = 0; i < 6; i++) t[i][j][l] = col[i];
                }
            for (int i = 0; i < 6; i++) /* (G g) G^T: rows */
                for (int l = 0; l < TG; l++) {
                    float row[6];
                    g_row(t[i][0][l], t[i][1][l], t[i][2][l], row);
                    for (int j = 0; j < 6; j++) u[i * 6 + j][l] = row[j];
                }
            for (int x = 0; x < 36; x++) {
                float *dst = U + x * plane + r * cols + c0;
#ifdef __SSE__
                /* U (4x the kernels: 59 MB for 640 x 640) is written once and read back by the
                 * GEMMs after all of it is made: streamed past the caches, its lines are not
                 * read in first (a 640-channel convolution at 32x32: 0.027 -> 0.023 s) */
                if (n == TG && ((uintptr_t)dst & 63) == 0) {
                    for (int l = 0; l < TG; l += 4) _mm_stream_ps(dst + l, _mm_loadu_ps(u[x] + l));
                    continue;
                }
#endif
                memcpy(dst, u[x], (size_t)n * sizeof(float));
            }
        }
#ifdef __SSE__
    _mm_sfence(); /* the streamed stores are seen by every thread after the loop */
#endif
}

/* B^T applied along one axis to 6 rows of n lanes: in[k*s + l] -> out[k*s + l], k = 0..5. */
static inline void bt_apply(const float *in, float *out, int64_t s, int64_t n) {
    for (int64_t l = 0; l < n; l++) {
        float d0 = in[0 * s + l], d1 = in[1 * s + l], d2 = in[2 * s + l];
        float d3 = in[3 * s + l], d4 = in[4 * s + l], d5 = in[5 * s + l];
        out[0 * s + l] = 4 * d0 - 5 * d2 + d4;
        out[1 * s + l] = -4 * d1 - 4 * d2 + d3 + d4;
        out[2 * s + l] = 4 * d1 - 4 * d2 - d3 + d4;
        out[3 * s + l] = -2 * d1 - d2 + 2 * d3 + d4;
        out[4 * s + l] = 2 * d1 - d2 - 2 * d3 + d4;
        out[5 * s + l] = 4 * d1 - 5 * d3 + d5;
    }
}

/* A^T applied along one axis: 6 vectors in[k*s] -> 4 vectors out[k*so]. */
static inline void at_apply(const float *in, int s, float *out, int so) {
    for (int l = 0; l < TG; l++) {
        float m0 = in[0 * s + l], m1 = in[1 * s + l], m2 = in[2 * s + l];
        float m3 = in[3 * s + l], m4 = in[4 * s + l], m5 = in[5 * s + l];
        float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
        out[0 * so + l] = m0 + a + c;
        out[1 * so + l] = b + 2 * d;
        out[2 * so + l] = a + 4 * c;
        out[3 * so + l] = b + 8 * d + m5;
    }
}

typedef struct {
    int64_t C, H, W, O, tw; /* tw: tiles per tile row */
} wino_geom;

/* Tiles of one tile row handled together by input_transform: their 6 input rows are first
 * transformed along y over contiguous x (vectorised, zero padding written once), then each
 * group of TG tiles along x from that small buffer. */
#define SEG 64
#define SEG_W (4 * SEG + 8)

/* V (36, C, n) <- B^T d B of the 6x6 patches of tiles [t0, t0 + n) of x (C, H, W). */
static void input_transform(const float *x, const wino_geom *g, int64_t t0, int64_t n, float *V) {
#pragma omp parallel for schedule(static) if (g->C * n >= 256)
    for (int64_t c = 0; c < g->C; c++) {
        const float *xc = x + c * g->H * g->W;
        float rows[6][SEG_W], col[6][SEG_W], d[36 * TG], t[36 * TG];
        for (int64_t i0 = 0; i0 < n;) {
            /* a segment: up to SEG consecutive tiles of one tile row */
            int64_t tile = t0 + i0, ty = tile / g->tw, tx0 = tile % g->tw;
            int64_t cnt = g->tw - tx0;
            if (cnt > SEG) cnt = SEG;
            if (cnt > n - i0) cnt = n - i0;
            /* input columns [x0, x0 + len); the buffers run on to whole groups of TG (zeros) */
            int64_t x0 = 4 * tx0 - 1, len = 4 * cnt + 2, lenp = 4 * ((cnt + TG - 1) / TG * TG) + 2;
            for (int i = 0; i < 6; i++) {
                int64_t iy = 4 * ty - 1 + i;
                float *r = rows[i];
                if (iy < 0 || iy >= g->H) {
                    memset(r, 0, (size_t)lenp * sizeof(float));
                    continue;
                }
                const float *src = xc + iy * g->W;
                int64_t lo = x0 < 0 ? -x0 : 0, hi = g->W - x0 < len ? g->W - x0 : len;
                for (int64_t k = 0; k < lo; k++) r[k] = 0.0f;
                memcpy(r + lo, src + x0 + lo, (size_t)(hi - lo) * sizeof(float));
                for (int64_t k = hi; k < lenp; k++) r[k] = 0.0f;
            }
            bt_apply(rows[0], col[0], SEG_W, lenp);    /* along y, over the input columns */
            for (int64_t g0 = 0; g0 < cnt; g0 += TG) { /* B^T along x, TG tiles at a time */
                int64_t gc = cnt - g0 < TG ? cnt - g0 : TG;
                for (int i = 0; i < 6; i++)
                    for (int j = 0; j < 6; j++)
                        for (int l = 0; l < TG; l++)
                            d[(i * 6 + j) * TG + l] = col[i][4 * (g0 + l) + j];
                for (int i = 0; i < 6; i++) /* along x, over the tiles */
                    bt_apply(d + i * 6 * TG, t + i * 6 * TG, TG, TG);
                for (int xi = 0; xi < 36; xi++) {
                    float *dst = V + (xi * g->C + c) * n + i0 + g0;
                    const float *v = t + xi * TG;
                    if (gc == TG)
                        for (int l = 0; l < TG; l++) dst[l] = v[l];
                    else
                        for (int64_t l = 0; l < gc; l++) dst[l] = v[l];
                }
            }
            i0 += cnt;
        }
    }
}

/* y (O, H, W) (+)= A^T m A of the products M (36, O, n) of tiles [t0, t0 + n). */
static void output_transform(const float *M, const wino_geom *g, int64_t t0, int64_t n, float *y,
                             int accumulate) {
#pragma omp parallel for schedule(static) if (g->O * n >= 256)
    for (int64_t o = 0; o < g->O; o++) {
        float *yo = y + o * g->H * g->W;
        float m[36 * TG], t[24 * TG], r[16 * TG];
        for (int64_t i0 = 0; i0 < n;) {
            int64_t tile = t0 + i0, ty = tile / g->tw, tx0 = tile % g->tw;
            int64_t cnt = g->tw - tx0;
            if (cnt > TG) cnt = TG;
            if (cnt > n - i0) cnt = n - i0;
            for (int xi = 0; xi < 36; xi++) {
                const float *src = M + (xi * g->O + o) * n + i0;
                if (cnt == TG)
                    for (int l = 0; l < TG; l++) m[xi * TG + l] = src[l];
                else
                    for (int l = 0; l < TG; l++) m[xi * TG + l] = l < cnt ? src[l] : 0.0f;
            }
            for (int j = 0; j < 6; j++) at_apply(m + j * TG, 6 * TG, t + j * TG, 6 * TG);
            for (int i = 0; i < 4; i++) at_apply(t + i * 6 * TG, TG, r + i * 4 * TG, TG);
            for (int i = 0; i < 4; i++) {
                int64_t oy = 4 * ty + i;
                if (oy >= g->H) break;
                float *row = yo + oy * g->W;
                for (int64_t l = 0; l < cnt; l++)
                    for (int j = 0; j < 4; j++) {
                        int64_t ox = 4 * (tx0 + l) + j;
                        if (ox >= g->W) break;
                        float v = r[(i * 4 + j) * TG + l];
                        row[ox] = accumulate ? row[ox] + v : v;
                    }
            }
            i0 += cnt;
        }
    }
}

/* M[xi] (O, n) = U[xi] (O, C) V[xi] (C, n) for the 36 positions. These GEMMs are small (at
 * SD's 64x64 level 320 x 256 x 320, 52 MFLOP; at 32x32 640 x 64 x 640): split across the threads,
 * each sgemm pays a fork and join and packs panels used for a few columns, so the threads take
 * whole positions instead, each product single-threaded: up to WINO_TILE_MAX_TILES columns by
 * the unpacked tile GEMM (V[xi] stays in L2), wider ones by sgemm. The 64x64 level's products
 * ran at 150 GFLOP/s in situ threaded per product (a position per thread: 283 in a
 * microbenchmark of the shape, 223 threaded); whole convolutions (bench engine) went 0.0119 ->
 * 0.0107 s at 64x64 and 0.0215 -> 0.0197 s at 32x32 with the tile GEMM; at the VAE's 512x512
 * (1,800 tiles a chunk) sgemm won (0.141 against 0.159 s). With thread counts that leave a round
 * of 36 positions uneven by more than an eighth (or inside a parallel region) the positions run
 * in turn, each product threaded by sgemm as before. */
#define WINO_TILE_MAX_TILES 256
static void position_gemms(int64_t O, int64_t n, int64_t C, const float *U, const float *V,
                           float *M) {
    int nt = omp_get_max_threads();
    int64_t rounds = (36 + nt - 1) / nt;
    int spread = nt > 1 && rounds * nt * 8 <= 36 * 9 && !omp_in_parallel();
    int tile = spread && asam_gemm_tile_supported() && n <= WINO_TILE_MAX_TILES;
    int restore = spread ? blas_enter_parallel() : 0;
#pragma omp parallel for schedule(static) if (spread)
    for (int xi = 0; xi < 36; xi++)
        if (tile)
            asam_gemm_tile(O, n, C, 1.0f, U + xi * O * C, C, 1, V + xi * C * n, n, 0.0f,
                           M + xi * O * n, n);
        else
            asam_gemm_fp32(0, 0, O, n, C, 1.0f, U + xi * O * C, C, V + xi * C * n, n, 0.0f,
                           M + xi * O * n, n);
    blas_leave_parallel(restore);
}

int asam_wino_conv3x3(asam_ctx *ctx, const float *x, int64_t C, int64_t H, int64_t W,
                      const float *U, int64_t O, float *y, int accumulate) {
    wino_geom g = {C, H, W, O, (W + 3) / 4};
    int64_t T = (H + 3) / 4 * g.tw;
    int64_t chunk = asam_wino_chunk_floats / (36 * (C + O));
    chunk = chunk < TG ? TG : chunk / TG * TG;
    if (chunk > T) chunk = T;
    asam_mark mk = asam_ctx_mark(ctx);
    float *V = asam_ctx_alloc(ctx, (size_t)(36 * C * chunk) * sizeof(float));
    float *M = asam_ctx_alloc(ctx, (size_t)(36 * O * chunk) * sizeof(float));
    if (!V || !M) return -1;
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        int64_t n = T - t0 < chunk ? T - t0 : chunk;
        input_transform(x, &g, t0, n, V);
        position_gemms(O, n, C, U, V, M);
        output_transform(M, &g, t0, n, y, accumulate);
    }
    asam_ctx_release(ctx, mk);
    return 0;
}
