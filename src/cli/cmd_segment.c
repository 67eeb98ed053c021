/* asam segment: SAM masks from box / point / mask prompts, as the official SamPredictor. */
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/efficientsam.h"
#include "asam/sam.h"
#include "cli/segment_esam.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROMPTS 256

/* Parse exactly n (or n-1 when optional_last) comma-separated finite numbers. */
static int parse_floats(const char *s, float *out, int n, int optional_last) {
    const char *p = s;
    int k = 0;
    while (k < n) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v)) return -1;
        out[k++] = (float)v;
        p = end;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == 0) break;
        return -1;
    }
    if (*p != 0) return -1;
    if (k == n || (optional_last && k == n - 1)) return k;
    return -1;
}

/* "mask.png" -> "mask_3.png" */
static void numbered_path(const char *path, int i, char *out, size_t n) {
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) dot = path + strlen(path);
    snprintf(out, n, "%.*s_%d%s", (int)(dot - path), path, i, dot);
}

static int read_meta_int(const asam_checkpoint *ck, const char *key, int *v) {
    const char *s = asam_checkpoint_metadata(ck, key);
    if (!s) return -1;
    char *end;
    long x = strtol(s, &end, 10);
    if (*end || x < 1 || x > 1 << 20) return -1;
    *v = (int)x;
    return 0;
}

/* emb: (256, G, G), G = S / 16 of the model (64 for the official 1024 input) */
static int load_embedding(const char *path, int G, float *emb, asam_sam_sizes *sz,
                          int *have_sizes) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck) != 0) return -1;
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "image_embedding");
    if (!t || t->numel != (int64_t)256 * G * G) {
        asam_checkpoint_close(ck);
        return asam_error("%s: no image_embedding of 256x%dx%d values (the model's input side is "
                          "%d)",
                          path, G, G, 16 * G);
    }
    int rc = asam_ckpt_read_f32(ck, t, emb);
    *have_sizes = read_meta_int(ck, "orig_h", &sz->orig_h) == 0 &&
                  read_meta_int(ck, "orig_w", &sz->orig_w) == 0 &&
                  read_meta_int(ck, "input_h", &sz->input_h) == 0 &&
                  read_meta_int(ck, "input_w", &sz->input_w) == 0;
    asam_checkpoint_close(ck);
    return rc;
}

/* mask: (L, L), L = S / 4 of the model (256 for the official 1024 input) */
static int load_mask_input(const char *path, int L, float *mask) {
    const int64_t LL = (int64_t)L * L;
    asam_image im = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return asam_error("%s: %s", path, strerror(errno));
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, 8, f);
    fclose(f);
    if (got == 8 && magic[0] == 0x89 && magic[1] == 'P' && magic[2] == 'N' && magic[3] == 'G') {
        if (asam_image_read(path, 1, &im) != 0) return -1;
        if (im.w != L || im.h != L) {
            int w = im.w, h = im.h;
            asam_image_free(&im);
            return asam_error("%s: mask input PNG must be %dx%d, got %dx%d", path, L, L, w, h);
        }
        for (int64_t i = 0; i < LL; i++) mask[i] = ((float)im.data[i] - 128.0f) / 6.35f;
        asam_image_free(&im);
        return 0;
    }
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck) != 0) return -1;
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "mask_input");
    int rc = 0;
    if (t) {
        if (t->numel != LL)
            rc = asam_error("%s: mask_input must hold %dx%d values", path, L, L);
        else
            rc = asam_ckpt_read_f32(ck, t, mask);
    } else if ((t = asam_checkpoint_find(ck, "low_res_logits")) != NULL && t->numel % LL == 0) {
        /* a --save file: best-IoU mask of the first prompt */
        const asam_ckpt_tensor *ti = asam_checkpoint_find(ck, "iou_predictions");
        float *all = malloc(sizeof(float) * (size_t)t->numel);
        int C = 1, best = 0;
        rc = all ? asam_ckpt_read_f32(ck, t, all) : asam_error("out of memory");
        if (rc == 0 && ti && ti->numel >= 1) {
            float iou[4096];
            C = (int)(ti->ndim >= 1 ? ti->shape[ti->ndim - 1] : 1);
            if (ti->numel <= 4096 && asam_ckpt_read_f32(ck, ti, iou) == 0)
                for (int c = 1; c < C; c++)
                    if (iou[c] > iou[best]) best = c;
        }
        if (rc == 0 && (int64_t)(best + 1) * LL > t->numel)
            rc = asam_error("%s: iou_predictions do not match low_res_logits", path);
        if (rc == 0) memcpy(mask, all + (size_t)best * LL, sizeof(float) * (size_t)LL);
        free(all);
    } else {
        rc = asam_error("%s: no 'mask_input' (%dx%d) or 'low_res_logits' tensor of that size", path,
                        L, L);
    }
    asam_checkpoint_close(ck);
    return rc;
}

static int write_overlay(const char *path, const asam_image *img, const asam_sam_result *r,
                         const int *chosen) {
    static const uint8_t colours[6][3] = {{30, 144, 255}, {255, 64, 64},  {64, 220, 64},
                                          {255, 200, 0},  {200, 64, 255}, {0, 220, 220}};
    asam_image o = {0};
    if (asam_image_alloc(&o, img->w, img->h, 3) != 0) return -1;
    memcpy(o.data, img->data, (size_t)img->w * img->h * 3);
    int64_t hw = (int64_t)img->w * img->h;
    for (int b = 0; b < r->batch; b++) {
        const uint8_t *m = r->masks + ((int64_t)b * r->n_masks + chosen[b]) * hw;
        const uint8_t *c = colours[b % 6];
        for (int64_t i = 0; i < hw; i++)
            if (m[i])
                for (int k = 0; k < 3; k++)
                    o.data[i * 3 + k] = (uint8_t)((o.data[i * 3 + k] + c[k] + 1) / 2);
    }
    int rc = asam_image_write_png(path, &o);
    asam_image_free(&o);
    return rc;
}

typedef struct {
    const char *model_path, *image_path, *out_path, *overlay_path, *save_path, *mask_path;
    const char *emb_path;
    int multimask, json, n_boxes, n_points;
    float boxes[MAX_PROMPTS * 4], points[MAX_PROMPTS * 2], labels[MAX_PROMPTS];
} segment_args;

static int parse_box(const char *v, void *dst, char *err, size_t n) {
    segment_args *a = dst;
    if (a->n_boxes == MAX_PROMPTS)
        return snprintf(err, n, "too many boxes (%d at most)", MAX_PROMPTS), -1;
    float *b = a->boxes + 4 * a->n_boxes;
    if (parse_floats(v, b, 4, 0) != 4)
        return snprintf(err, n, "expected x0,y0,x1,y1 (four numbers)"), -1;
    if (b[2] <= b[0] || b[3] <= b[1]) return snprintf(err, n, "needs x0 < x1 and y0 < y1"), -1;
    a->n_boxes++;
    return 0;
}

static int parse_point(const char *v, void *dst, char *err, size_t n) {
    segment_args *a = dst;
    if (a->n_points == MAX_PROMPTS)
        return snprintf(err, n, "too many points (%d at most)", MAX_PROMPTS), -1;
    float t[3] = {0, 0, 1};
    int k = parse_floats(v, t, 3, 1);
    if (k < 2) return snprintf(err, n, "expected x,y or x,y,label"), -1;
    if (k == 3 && t[2] != 1.0f && t[2] != 0.0f && t[2] != -1.0f)
        return snprintf(err, n, "label must be 1, 0 or -1"), -1;
    a->points[2 * a->n_points] = t[0];
    a->points[2 * a->n_points + 1] = t[1];
    a->labels[a->n_points++] = t[2];
    return 0;
}

static int parse_args(segment_args *a, int argc, char **argv) {
    const cli_opt opts[] = {
        {"--model", OPT_STR, &a->model_path, "FILE",
         "SAM ViT-B/L/H or EfficientSAM ViT-Ti/S (official .pth/.pt or\n"
         "safetensors; the family is read from the file)",
         .required = 1},
        {"--image", OPT_STR, &a->image_path, "FILE", "the image (JPEG/PNG)"},
        {"--box", OPT_CUSTOM, a, "x0,y0,x1,y1",
         "a box; repeat for several boxes: each box is one prompt and\n"
         "gives one mask (points, if any, are added to every box)",
         .parse = parse_box},
        {"--point", OPT_CUSTOM, a, "x,y[,label]",
         "a point, label 1 (foreground, default), 0 (background) or -1\n"
         "(ignored); all points go into the same prompt(s)",
         .parse = parse_point},
        {"--mask-input", OPT_STR, &a->mask_path, "FILE",
         "a low-res mask prompt in the 256x256 frame of the padded 1024\n"
         "input (S/4 x S/4 of S for a model of input side S): a safetensors\n"
         "holding 'mask_input' (256x256 logits, any leading dims of 1), or a\n"
         "--save file (its best-IoU low-res mask of the first prompt is used),\n"
         "or an 8-bit gray 256x256 PNG where pixel v means logit\n"
         "(v - 128) / 6.35 (0 -> -20, 255 -> +20)"},
        {"--multimask", OPT_FLAG, &a->multimask, NULL,
         "predict 3 masks per prompt and keep the one with the highest\n"
         "predicted IoU (--save keeps all 3)"},
        {"--out", OPT_STR, &a->out_path, "MASK.png",
         "binary mask (0/255) at the original size; with several prompts one\n"
         "PNG per prompt: MASK_0.png, MASK_1.png, ... (suffix before .png)",
         .required = 1},
        {"--overlay", OPT_STR, &a->overlay_path, "FILE.png",
         "the image with the mask(s) tinted on top (needs --image)"},
        {"--save", OPT_STR, &a->save_path, "FILE",
         "safetensors with image_embedding (1,256,64,64), low_res_logits,\n"
         "iou_predictions and mask_logits with the official predictor's\n"
         "shapes: (C,256,256), (C), (C,H,W) for one prompt, (B,C,...) for B\n"
         "boxes (64 and 256 are S/16 and S/4 for a model of input side S);\n"
         "metadata holds orig_h, orig_w, input_h, input_w"},
        {"--json", OPT_FLAG, &a->json, NULL,
         "print IoU predictions and mask areas as JSON on stdout"},
        {"--embedding", OPT_STR, &a->emb_path, "FILE",
         "reuse the image_embedding of a --save file (skips the encoder);\n"
         "--image is then optional (needed only for --overlay)"},
    };
    const cli_spec spec = {
        "segment",
        "--model FILE (--image FILE | --embedding FILE) [prompts] --out MASK.png\n"
        "                    [--overlay OVERLAY.png] [--save RESULT.safetensors] [--json]",
        "Segment an image with SAM (ViT-B/L/H, official .pth or safetensors), as the official\n"
        "SamPredictor: ResizeLongestSide(1024), decoder on the image embedding, masks = logits > "
        "0.\n"
        "A SAM built for another input side S (read from the checkpoint) works in its S frame.\n"
        "Prompt coordinates are in original image pixels; give at least one prompt.\n"
        "Segment everything (no prompts, SA-1B JSON out): asam segment --everything --help\n",
        opts,
        CLI_NOPTS(opts),
        NULL,
        NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return rc;
    const char *bad = !a->image_path && !a->emb_path
                          ? "--image FILE (or --embedding FILE) is required"
                      : !a->n_boxes && !a->n_points && !a->mask_path
                          ? "no prompt: give --box, --point or --mask-input"
                      : a->overlay_path && !a->image_path ? "--overlay needs --image"
                                                          : NULL;
    if (bad) {
        fprintf(stderr, "asam segment: %s (see asam segment --help)\n", bad);
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* Everything one run holds; freed by seg_free. */
typedef struct {
    asam_image img;
    asam_sam_sizes sz;
    float *emb, *mask; /* (256,S/16,S/16) reused embedding; (S/4,S/4) mask prompt */
    asam_sam *m;
    asam_sam_predictor pred;
    asam_sam_result res;
    int B, *chosen; /* prompts; per prompt the kept mask (highest predicted IoU) */
} seg_run;

static void seg_free(seg_run *r) {
    free(r->chosen);
    asam_sam_result_free(&r->res);
    if (r->pred.ctx) asam_sam_predictor_free(&r->pred);
    asam_sam_free(r->m);
    free(r->emb);
    free(r->mask);
    asam_image_free(&r->img);
}

/* The image, then the model; a stored embedding checked against both; then the prompts (the
 * embedding and mask prompt sizes follow the model's input side S). */
static int load_inputs(const segment_args *a, seg_run *r) {
    if (a->image_path && asam_image_read(a->image_path, 3, &r->img) != 0) return -1;
    if (asam_sam_load_frozen(a->model_path, &r->m) != 0) return -1;
    const int S = asam_sam_img_size(r->m), G = asam_sam_grid(r->m), L = asam_sam_lowres(r->m);
    if (a->image_path) asam_sam_sizes_at(S, r->img.h, r->img.w, &r->sz);
    if (a->emb_path) {
        asam_sam_sizes es = {0};
        int have = 0;
        r->emb = malloc(sizeof(float) * 256 * (size_t)G * G);
        if (!r->emb) return asam_error("out of memory");
        if (load_embedding(a->emb_path, G, r->emb, &es, &have) != 0) return -1;
        if (!have && !a->image_path)
            return asam_error("%s: no orig_h/orig_w/input_h/input_w metadata; give --image too",
                              a->emb_path);
        if (have && a->image_path && (es.orig_h != r->img.h || es.orig_w != r->img.w))
            return asam_error("%s: embedding is for a %dx%d image but %s is %dx%d", a->emb_path,
                              es.orig_w, es.orig_h, a->image_path, r->img.w, r->img.h);
        if (have && (es.input_h > S || es.input_w > S || es.input_h < 1 || es.input_w < 1))
            return asam_error("%s: input size %dx%d does not fit the model's input side %d",
                              a->emb_path, es.input_w, es.input_h, S);
        if (have) r->sz = es;
    }
    /* Prompts partly or wholly outside the image are accepted as SamPredictor accepts them:
     * ResizeLongestSide.apply_coords / apply_boxes scale them without clamping, and the
     * prompt encoder embeds any coordinate. */
    if (a->mask_path) {
        r->mask = malloc(sizeof(float) * (size_t)L * L);
        if (!r->mask) return asam_error("out of memory");
        if (load_mask_input(a->mask_path, L, r->mask) != 0) return -1;
    }
    return 0;
}

/* Copy a per-prompt array B times (the points and the mask prompt go with every box). */
static float *repeat(const float *src, size_t n, int B) {
    float *dst = malloc(sizeof(float) * n * (size_t)B);
    if (dst)
        for (int b = 0; b < B; b++) memcpy(dst + (size_t)b * n, src, sizeof(float) * n);
    return dst;
}

/* Encoder (or the reused embedding), decoder; B prompts: one per box, else one. */
static int run(const segment_args *a, seg_run *r) {
    if (asam_sam_predictor_init(&r->pred, r->m) != 0) return -1;
    if (r->emb ? asam_sam_predictor_set_embedding(&r->pred, r->emb, &r->sz)
               : asam_sam_predictor_set_image(&r->pred, &r->img))
        return -1;
    const int B = r->B = a->n_boxes ? a->n_boxes : 1, np = a->n_points;
    float *pts = np ? repeat(a->points, (size_t)np * 2, B) : NULL;
    float *lab = np ? repeat(a->labels, (size_t)np, B) : NULL;
    const size_t LL = (size_t)asam_sam_lowres(r->m) * asam_sam_lowres(r->m);
    float *mk = r->mask ? repeat(r->mask, LL, B) : NULL;
    int rc;
    if ((np && (!pts || !lab)) || (r->mask && !mk)) {
        rc = asam_error("out of memory");
    } else {
        asam_sam_query q = {.batch = B,
                            .n_points = np,
                            .points = pts,
                            .labels = lab,
                            .boxes = a->n_boxes ? a->boxes : NULL,
                            .mask_input = mk};
        rc = asam_sam_predictor_predict(&r->pred, &q, a->multimask, &r->res);
    }
    free(pts);
    free(lab);
    free(mk);
    if (rc) return -1;
    const int C = r->res.n_masks;
    r->chosen = calloc((size_t)B, sizeof(int));
    if (!r->chosen) return asam_error("out of memory");
    for (int b = 0; b < B; b++)
        for (int c = 1; c < C; c++)
            if (r->res.iou[b * C + c] > r->res.iou[b * C + r->chosen[b]]) r->chosen[b] = c;
    return 0;
}

/* --save: the embedding and every output with the official predictor's shapes. */
static int write_save(const segment_args *a, const seg_run *r) {
    const asam_sam_result *res = &r->res;
    const int B = r->B, C = res->n_masks, H = res->h, W = res->w;
    char oh[16], ow[16], ih[16], iw[16];
    snprintf(oh, sizeof oh, "%d", H);
    snprintf(ow, sizeof ow, "%d", W);
    snprintf(ih, sizeof ih, "%d", r->sz.input_h);
    snprintf(iw, sizeof iw, "%d", r->sz.input_w);
    const char *meta[] = {"orig_h", oh, "orig_w", ow, "input_h", ih, "input_w", iw};
    int one = B == 1 && a->n_boxes <= 1; /* predict() shapes, else predict_torch's */
    const int64_t G = asam_sam_grid(r->m), L = asam_sam_lowres(r->m); /* 64, 256 */
    asam_st_entry e[4];
    memset(e, 0, sizeof e);
    e[0] =
        (asam_st_entry){"image_embedding", ASAM_DT_F32, 4, {1, 256, G, G}, r->pred.embedding->data};
    if (one) {
        e[1] = (asam_st_entry){"low_res_logits", ASAM_DT_F32, 3, {C, L, L}, res->low_res};
        e[2] = (asam_st_entry){"iou_predictions", ASAM_DT_F32, 1, {C}, res->iou};
        e[3] = (asam_st_entry){"mask_logits", ASAM_DT_F32, 3, {C, H, W}, res->mask_logits};
    } else {
        e[1] = (asam_st_entry){"low_res_logits", ASAM_DT_F32, 4, {B, C, L, L}, res->low_res};
        e[2] = (asam_st_entry){"iou_predictions", ASAM_DT_F32, 2, {B, C}, res->iou};
        e[3] = (asam_st_entry){"mask_logits", ASAM_DT_F32, 4, {B, C, H, W}, res->mask_logits};
    }
    return asam_safetensors_write(a->save_path, e, 4, meta, 4);
}

/* The --json record of prompt b: every mask's predicted IoU and area, and the kept one. */
static void json_prompt(cJSON *jm, const seg_run *r, int b, const char *path, int64_t area) {
    const asam_sam_result *res = &r->res;
    const int C = res->n_masks;
    const int64_t hw = (int64_t)res->h * res->w;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "prompt", b);
    cJSON_AddStringToObject(o, "file", path);
    cJSON *ious = cJSON_AddArrayToObject(o, "iou_predictions");
    cJSON *areas = cJSON_AddArrayToObject(o, "areas");
    for (int c = 0; c < C; c++) {
        int64_t ac = 0;
        const uint8_t *mc = res->masks + ((int64_t)b * C + c) * hw;
        for (int64_t i = 0; i < hw; i++) ac += mc[i];
        cJSON_AddItemToArray(ious, cJSON_CreateNumber(res->iou[b * C + c]));
        cJSON_AddItemToArray(areas, cJSON_CreateNumber((double)ac));
    }
    cJSON_AddNumberToObject(o, "chosen", r->chosen[b]);
    cJSON_AddNumberToObject(o, "iou", res->iou[b * C + r->chosen[b]]);
    cJSON_AddNumberToObject(o, "area", (double)area);
    cJSON_AddItemToArray(jm, o);
}

static void json_print(cJSON *js, const seg_run *r) {
    cJSON_AddStringToObject(js, "model", r->m->cfg.variant);
    cJSON *osz = cJSON_AddArrayToObject(js, "original_size");
    cJSON_AddItemToArray(osz, cJSON_CreateNumber(r->res.h));
    cJSON_AddItemToArray(osz, cJSON_CreateNumber(r->res.w));
    cJSON *isz = cJSON_AddArrayToObject(js, "input_size");
    cJSON_AddItemToArray(isz, cJSON_CreateNumber(r->sz.input_h));
    cJSON_AddItemToArray(isz, cJSON_CreateNumber(r->sz.input_w));
    char *s = cJSON_Print(js);
    if (s) puts(s);
    free(s);
}

/* Every output, each written atomically: --save, the mask PNG(s), --overlay, then --json. */
static int write_outputs(const segment_args *a, const seg_run *r) {
    if (a->save_path && write_save(a, r) != 0) return -1;
    const asam_sam_result *res = &r->res;
    const int C = res->n_masks;
    const int64_t hw = (int64_t)res->h * res->w;
    asam_image mimg = {0};
    if (asam_image_alloc(&mimg, res->w, res->h, 1) != 0) return -1;
    cJSON *js = a->json ? cJSON_CreateObject() : NULL;
    cJSON *jm = js ? cJSON_AddArrayToObject(js, "masks") : NULL;
    int rc = 0;
    for (int b = 0; b < r->B && !rc; b++) {
        const uint8_t *src = res->masks + ((int64_t)b * C + r->chosen[b]) * hw;
        int64_t area = 0;
        for (int64_t i = 0; i < hw; i++) {
            mimg.data[i] = src[i] ? 255 : 0;
            area += src[i];
        }
        char path[4096];
        if (r->B == 1)
            snprintf(path, sizeof path, "%s", a->out_path);
        else
            numbered_path(a->out_path, b, path, sizeof path);
        rc = asam_image_write_png(path, &mimg);
        if (!rc && jm) json_prompt(jm, r, b, path, area);
    }
    asam_image_free(&mimg);
    if (!rc && a->overlay_path) rc = write_overlay(a->overlay_path, &r->img, res, r->chosen);
    if (!rc && js) json_print(js, r);
    if (!rc && !js) /* without --json: one summary line, never silence */
        printf("wrote %d mask%s to %s%s\n", r->B, r->B == 1 ? "" : "s", a->out_path,
               r->B == 1 ? "" : " (numbered)");
    cJSON_Delete(js);
    return rc;
}

int cmd_segment(int argc, char **argv) {
    for (int i = 1; i < argc; i++) /* automatic mask generation: its own options */
        if (!strcmp(argv[i], "--everything")) return cmd_segment_everything(argc, argv);
    static segment_args a; /* ~5 KB of prompts: off the stack */
    memset(&a, 0, sizeof a);
    int rc = parse_args(&a, argc, argv);
    if (rc) return cli_exit_code(rc);
    /* an EfficientSAM checkpoint takes its own official pipeline (segment_esam.c) */
    const char *fam = asam_model_family_of_file(a.model_path);
    if (fam && !strcmp(fam, "efficientsam")) {
        const segment_esam_args e = {a.model_path, a.image_path, a.out_path,  a.overlay_path,
                                     a.save_path,  a.emb_path,   a.mask_path, a.multimask,
                                     a.json,       a.n_boxes,    a.n_points,  a.boxes,
                                     a.points,     a.labels};
        return segment_efficientsam(&e);
    }
    seg_run r = {0};
    rc = load_inputs(&a, &r) || run(&a, &r) || write_outputs(&a, &r);
    if (rc) cli_fail("segment", "%s", asam_last_error());
    seg_free(&r);
    return rc;
}
