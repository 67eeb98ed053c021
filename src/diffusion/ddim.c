/* DDPM schedule, DDIM timestep lists (CompVis and ASAM/diffusers conventions), the DDIM
 * update and its inversion, classifier-free guidance, and a deterministic Gaussian PRNG. */
#include "asam/sd.h"

#include <math.h>
#include <string.h>

void asam_sd_alphas_cumprod(float ac[ASAM_DDPM_STEPS]) {
    /* betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2 in float64 (numpy's linspace:
     * start + i*step, the last value exactly the stop), cumprod in float64, stored float32. */
    const double a = sqrt(0.00085), b = sqrt(0.012);
    const double step = (b - a) / (ASAM_DDPM_STEPS - 1);
    double prod = 1.0;
    for (int i = 0; i < ASAM_DDPM_STEPS; i++) {
        double s = i == ASAM_DDPM_STEPS - 1 ? b : a + i * step;
        prod *= 1.0 - s * s;
        ac[i] = (float)prod;
    }
}

int asam_ddim_init(asam_ddim *s, int steps, int steps_offset) {
    if (steps < 1 || steps > ASAM_DDPM_STEPS || (steps_offset != 0 && steps_offset != 1)) return -1;
    memset(s, 0, sizeof *s);
    asam_sd_alphas_cumprod(s->alphas_cumprod);
    const int c = ASAM_DDPM_STEPS / steps;
    int asc[ASAM_DDPM_STEPS], n = 0;
    if (steps_offset == 1) {
        /* CompVis make_ddim_timesteps("uniform"): range(0, 1000, c) + 1 */
        for (int t = 0; t < ASAM_DDPM_STEPS; t += c) asc[n++] = t + 1;
    } else {
        /* diffusers "leading" with steps_offset 0: arange(S) * c */
        for (int i = 0; i < steps; i++) asc[n++] = i * c;
    }
    s->n = n;
    for (int i = 0; i < n; i++) {
        int t = asc[n - 1 - i];
        s->t[i] = t;
        s->alpha[i] = s->alphas_cumprod[t];
        /* the previous (lower) DDIM timestep, or alphas_cumprod[0] after the last step */
        s->alpha_prev[i] = i + 1 < n ? s->alphas_cumprod[asc[n - 2 - i]] : s->alphas_cumprod[0];
    }
    return 0;
}

asam_tensor *asam_ddim_step(asam_ctx *ctx, asam_tensor *x, asam_tensor *eps, float a_t,
                            float a_prev, asam_tensor **pred_x0_out) {
    const double sa = sqrt((double)a_t), s1a = sqrt(1.0 - (double)a_t);
    asam_tensor *x0 = asam_axpby(ctx, (float)(1.0 / sa), x, (float)(-s1a / sa), eps);
    if (pred_x0_out) *pred_x0_out = x0;
    return asam_axpby(ctx, (float)sqrt((double)a_prev), x0, (float)sqrt(1.0 - (double)a_prev), eps);
}

asam_tensor *asam_ddim_invert_step(asam_ctx *ctx, asam_tensor *x, asam_tensor *eps, float a_cur,
                                   float a_next) {
    const double sa = sqrt((double)a_cur), s1a = sqrt(1.0 - (double)a_cur);
    asam_tensor *x0 = asam_axpby(ctx, (float)(1.0 / sa), x, (float)(-s1a / sa), eps);
    return asam_axpby(ctx, (float)sqrt((double)a_next), x0, (float)sqrt(1.0 - (double)a_next), eps);
}

int asam_ddim_invert_alphas(const asam_ddim *s, int i, float *a_cur, float *a_next) {
    /* ascending order: step i visits t = s->t[n-1-i] */
    const int t = s->t[s->n - 1 - i];
    *a_cur = i > 0 ? s->alphas_cumprod[s->t[s->n - i]] : s->alphas_cumprod[0];
    *a_next = s->alphas_cumprod[t];
    return t;
}

asam_tensor *asam_cfg_combine(asam_ctx *ctx, asam_tensor *e_u, asam_tensor *e_c, float w) {
    /* e_u + w (e_c - e_u), as the reference computes it (not (1-w) e_u + w e_c, which rounds
     * differently for w = 7.5) */
    return asam_add(ctx, e_u, asam_scale(ctx, asam_sub(ctx, e_c, e_u), w));
}

/* ---- Philox-4x32-10 + Box-Muller ------------------------------------------------------------ */
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
