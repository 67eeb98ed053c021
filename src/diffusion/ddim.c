/* DDPM schedule, DDIM timestep lists (CompVis and ASAM/diffusers conventions), the DDIM
 * update and its inversion, classifier-free guidance. The Gaussian noise (asam_randn) is in
 * util/rng.c. */
#include "asam/sd.h"

#include <math.h>
#include <string.h>

// ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/util.py:24 (make_beta_schedule
//   "linear"), models/diffusion/ddpm.py:117 (register_schedule)
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

// ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/util.py:46 (make_ddim_timesteps; +1
//   offset :57), :66 (alphas_prev)
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

// ref: CompVis/stable-diffusion ldm/models/diffusion/ddim.py:195 (pred_x0), :199 (dir_xt), :203
//   (x_prev), eta 0
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

// ref: CompVis/stable-diffusion ldm/models/diffusion/ddim.py:178 (e_t_uncond + scale * (e_t -
//   e_t_uncond))
asam_tensor *asam_cfg_combine(asam_ctx *ctx, asam_tensor *e_u, asam_tensor *e_c, float w) {
    /* e_u + w (e_c - e_u), as the reference computes it (not (1-w) e_u + w e_c, which rounds
     * differently for w = 7.5) */
    return asam_add(ctx, e_u, asam_scale(ctx, asam_sub(ctx, e_c, e_u), w));
}
