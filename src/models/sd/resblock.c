/* The residual block shared by the UNet and the VAE (see sd_internal.h). */
#include "asam/error.h"
#include "models/sd/sd_internal.h"

#include <stdio.h>

const sd_resblock_names sd_resblock_unet = {"ResBlock",       "in_layers.0",  "in_layers.2",
                                            "emb_layers.1",   "out_layers.0", "out_layers.3",
                                            "skip_connection"};
const sd_resblock_names sd_resblock_vae = {"ResnetBlock", "norm1", "conv1",       NULL,
                                           "norm2",       "conv2", "nin_shortcut"};

int sd_resblock_load(sd_loader *L, sd_resblock *r, const char *base, int cin, int temb,
                     const sd_resblock_names *nm) {
    int64_t s[8];
    char key[256];
    snprintf(key, sizeof key, "%s.%s.weight", base, nm->conv1);
    if (sd_probe(L, key, s) != 4) {
        L->b.failed = 1;
        return asam_error("%s: missing tensor '%s' (%s)", sd_loader_path(L), key, nm->what);
    }
    const int cout = (int)s[0];
    r->cin = cin;
    r->cout = cout;
    // ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/openaimodel.py:163 (ResBlock)
    // and ldm/modules/diffusionmodules/model.py:82 (ResnetBlock): the same block, other names
    r->norm1_w = sd_paramf(L, 1, cin, 0, 0, 0, "%s.%s.weight", base, nm->norm1);
    r->norm1_b = sd_paramf(L, 1, cin, 0, 0, 0, "%s.%s.bias", base, nm->norm1);
    r->conv1_w = sd_paramf(L, 4, cout, cin, 3, 3, "%s.%s.weight", base, nm->conv1);
    r->conv1_b = sd_paramf(L, 1, cout, 0, 0, 0, "%s.%s.bias", base, nm->conv1);
    if (temb > 0 && nm->emb) {
        r->emb_w = sd_paramf(L, 2, cout, temb, 0, 0, "%s.%s.weight", base, nm->emb);
        r->emb_b = sd_paramf(L, 1, cout, 0, 0, 0, "%s.%s.bias", base, nm->emb);
    }
    r->norm2_w = sd_paramf(L, 1, cout, 0, 0, 0, "%s.%s.weight", base, nm->norm2);
    r->norm2_b = sd_paramf(L, 1, cout, 0, 0, 0, "%s.%s.bias", base, nm->norm2);
    r->conv2_w = sd_paramf(L, 4, cout, cout, 3, 3, "%s.%s.weight", base, nm->conv2);
    r->conv2_b = sd_paramf(L, 1, cout, 0, 0, 0, "%s.%s.bias", base, nm->conv2);
    if (cin != cout) {
        r->skip_w = sd_paramf(L, 4, cout, cin, 1, 1, "%s.%s.weight", base, nm->skip);
        r->skip_b = sd_paramf(L, 1, cout, 0, 0, 0, "%s.%s.bias", base, nm->skip);
    }
    if (cin % SD_GN_GROUPS || cout % SD_GN_GROUPS) {
        L->b.failed = 1;
        return asam_error("%s: %s: %d/%d channels are not divisible into %d groups",
                          sd_loader_path(L), base, cin, cout, SD_GN_GROUPS);
    }
    return L->b.failed ? -1 : 0;
}

// ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/openaimodel.py:255
//   (ResBlock._forward), model.py:121 (ResnetBlock.forward)
asam_tensor *sd_resblock_forward(asam_ctx *ctx, const sd_resblock *r, asam_tensor *x,
                                 asam_tensor *emb, float eps) {
    asam_tensor *h = asam_group_norm_silu(ctx, x, SD_GN_GROUPS, r->norm1_w, r->norm1_b, eps);
    asam_tensor *bias1 = r->conv1_b;
    if (emb) { // the timestep embedding, projected to (B, Cout), added per channel: folded into
               // conv1's bias, one (B, Cout) bias per image, instead of a pass over h
        asam_tensor *e = asam_linear(ctx, asam_silu(ctx, emb), r->emb_w, r->emb_b);
        bias1 = bias1 ? asam_add(ctx, e, bias1) : e;
    }
    h = asam_conv2d(ctx, h, r->conv1_w, bias1, 1, 1);
    h = asam_group_norm_silu(ctx, h, SD_GN_GROUPS, r->norm2_w, r->norm2_b, eps);
    asam_tensor *skip = r->skip_w ? asam_conv2d(ctx, x, r->skip_w, r->skip_b, 1, 0) : x;
    return asam_conv2d_add(ctx, h, r->conv2_w, r->conv2_b, 1, 1, skip); // skip + conv2(h)
}
