/* asam segment: SAM masks from box / point / mask prompts, as the official SamPredictor. */
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/sam.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *k_usage =
    "usage: asam segment --model FILE (--image FILE | --embedding FILE) [prompts] --out MASK.png\n"
    "                    [--overlay OVERLAY.png] [--save RESULT.safetensors] [--json]\n"
    "\n"
    "Segment an image with SAM (ViT-B/L/H, official .pth or safetensors), as the official\n"
    "SamPredictor: ResizeLongestSide(1024), decoder on the image embedding, masks = logits > 0.\n"
    "\n"
    "prompts (coordinates in original image pixels; at least one prompt):\n"
    "  --box x0,y0,x1,y1     a box; repeat for several boxes: each box is one prompt and\n"
    "                        gives one mask (points, if any, are added to every box)\n"
    "  --point x,y[,label]   a point, label 1 (foreground, default), 0 (background) or -1\n"
    "                        (ignored); all points go into the same prompt(s)\n"
    "  --mask-input FILE     a low-res mask prompt in the 256x256 frame of the padded 1024\n"
    "                        input: a safetensors holding 'mask_input' (256x256 logits, any\n"
    "                        leading dims of 1), or a --save file (its best-IoU low-res mask of\n"
    "                        the first prompt is used), or an 8-bit gray 256x256 PNG where pixel\n"
    "                        v means logit (v - 128) / 6.35 (0 -> -20, 255 -> +20)\n"
    "  --multimask           predict 3 masks per prompt and keep the one with the highest\n"
    "                        predicted IoU (--save keeps all 3)\n"
    "\n"
    "outputs:\n"
    "  --out MASK.png        binary mask (0/255) at the original size; with several prompts one\n"
    "                        PNG per prompt: MASK_0.png, MASK_1.png, ... (suffix before .png)\n"
    "  --overlay FILE.png    the image with the mask(s) tinted on top (needs --image)\n"
    "  --save FILE           safetensors with image_embedding (1,256,64,64), low_res_logits,\n"
    "                        iou_predictions and mask_logits with the official predictor's\n"
    "                        shapes: (C,256,256), (C), (C,H,W) for one prompt, (B,C,...) for B\n"
    "                        boxes; metadata holds orig_h, orig_w, input_h, input_w\n"
    "  --json                print IoU predictions and mask areas as JSON on stdout\n"
    "  --embedding FILE      reuse the image_embedding of a --save file (skips the encoder);\n"
    "                        --image is then optional (needed only for --overlay)\n";

#define MAX_PROMPTS 256

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "asam segment: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

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

static int load_embedding(const char *path, float *emb, asam_sam_sizes *sz, int *have_sizes) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck) != 0) return -1;
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "image_embedding");
    if (!t || t->numel != 256 * 64 * 64) {
        asam_checkpoint_close(ck);
        return asam_error("%s: no image_embedding of 256x64x64 values", path);
    }
    int rc = asam_ckpt_read_f32(ck, t, emb);
    *have_sizes = read_meta_int(ck, "orig_h", &sz->orig_h) == 0 &&
                  read_meta_int(ck, "orig_w", &sz->orig_w) == 0 &&
                  read_meta_int(ck, "input_h", &sz->input_h) == 0 &&
                  read_meta_int(ck, "input_w", &sz->input_w) == 0;
    asam_checkpoint_close(ck);
    return rc;
}

static int load_mask_input(const char *path, float *mask) {
    asam_image im = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return asam_error("%s: %s", path, strerror(errno));
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, 8, f);
    fclose(f);
    if (got == 8 && magic[0] == 0x89 && magic[1] == 'P' && magic[2] == 'N' && magic[3] == 'G') {
        if (asam_image_read(path, 1, &im) != 0) return -1;
        if (im.w != 256 || im.h != 256) {
            int w = im.w, h = im.h;
            asam_image_free(&im);
            return asam_error("%s: mask input PNG must be 256x256, got %dx%d", path, w, h);
        }
        for (int i = 0; i < 256 * 256; i++) mask[i] = ((float)im.data[i] - 128.0f) / 6.35f;
        asam_image_free(&im);
        return 0;
    }
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck) != 0) return -1;
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "mask_input");
    int rc = 0;
    if (t) {
        if (t->numel != 256 * 256)
            rc = asam_error("%s: mask_input must hold 256x256 values", path);
        else
            rc = asam_ckpt_read_f32(ck, t, mask);
    } else if ((t = asam_checkpoint_find(ck, "low_res_logits")) != NULL && t->numel % 65536 == 0) {
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
        if (rc == 0) memcpy(mask, all + (size_t)best * 65536, sizeof(float) * 65536);
        free(all);
    } else {
        rc = asam_error("%s: no 'mask_input' (256x256) or 'low_res_logits' tensor", path);
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

int cmd_segment(int argc, char **argv) {
    const char *model_path = NULL, *image_path = NULL, *out_path = NULL, *overlay_path = NULL;
    const char *save_path = NULL, *mask_path = NULL, *emb_path = NULL;
    int multimask = 0, json = 0, n_boxes = 0, n_points = 0;
    static float boxes[MAX_PROMPTS * 4], points[MAX_PROMPTS * 2], labels[MAX_PROMPTS];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(k_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--multimask")) {
            multimask = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--image") || !strcmp(a, "--out") ||
                   !strcmp(a, "--overlay") || !strcmp(a, "--save") || !strcmp(a, "--mask-input") ||
                   !strcmp(a, "--embedding") || !strcmp(a, "--box") || !strcmp(a, "--point")) {
            if (!has_val) return fail("%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--model"))
                model_path = v;
            else if (!strcmp(a, "--image"))
                image_path = v;
            else if (!strcmp(a, "--out"))
                out_path = v;
            else if (!strcmp(a, "--overlay"))
                overlay_path = v;
            else if (!strcmp(a, "--save"))
                save_path = v;
            else if (!strcmp(a, "--mask-input"))
                mask_path = v;
            else if (!strcmp(a, "--embedding"))
                emb_path = v;
            else if (!strcmp(a, "--box")) {
                if (n_boxes == MAX_PROMPTS) return fail("too many boxes (at most %d)", MAX_PROMPTS);
                float *b = boxes + 4 * n_boxes;
                if (parse_floats(v, b, 4, 0) != 4)
                    return fail("--box '%s': expected x0,y0,x1,y1 (four numbers)", v);
                if (b[2] <= b[0] || b[3] <= b[1])
                    return fail("--box '%s': needs x0 < x1 and y0 < y1", v);
                n_boxes++;
            } else {
                if (n_points == MAX_PROMPTS)
                    return fail("too many points (at most %d)", MAX_PROMPTS);
                float t[3] = {0, 0, 1};
                int k = parse_floats(v, t, 3, 1);
                if (k < 2) return fail("--point '%s': expected x,y or x,y,label", v);
                if (k == 3 && t[2] != 1.0f && t[2] != 0.0f && t[2] != -1.0f)
                    return fail("--point '%s': label must be 1, 0 or -1", v);
                points[2 * n_points] = t[0];
                points[2 * n_points + 1] = t[1];
                labels[n_points++] = t[2];
            }
        } else {
            return fail("unknown option '%s' (see asam segment --help)", a);
        }
    }
    if (!model_path) return fail("--model FILE is required");
    if (!image_path && !emb_path) return fail("--image FILE (or --embedding FILE) is required");
    if (!out_path) return fail("--out FILE is required");
    if (!n_boxes && !n_points && !mask_path)
        return fail("no prompt: give --box, --point or --mask-input");
    if (overlay_path && !image_path) return fail("--overlay needs --image");

    asam_image img = {0};
    asam_sam_sizes sz = {0};
    float *emb = NULL, *mask = NULL;
    asam_sam *m = NULL;
    asam_sam_predictor pred = {0};
    asam_sam_result res = {0};
    int rc = 1, *chosen = NULL;
    if (image_path) {
        if (asam_image_read(image_path, 3, &img) != 0) {
            fail("%s", asam_last_error());
            goto done;
        }
        asam_sam_sizes_for(img.h, img.w, &sz);
    }
    if (emb_path) {
        emb = malloc(sizeof(float) * 256 * 64 * 64);
        asam_sam_sizes es = {0};
        int have = 0;
        if (!emb || load_embedding(emb_path, emb, &es, &have) != 0) {
            fail("%s", asam_last_error());
            goto done;
        }
        if (!have && !image_path) {
            fail("%s: no orig_h/orig_w/input_h/input_w metadata; give --image too", emb_path);
            goto done;
        }
        if (have && image_path && (es.orig_h != img.h || es.orig_w != img.w)) {
            fail("%s: embedding is for a %dx%d image but %s is %dx%d", emb_path, es.orig_w,
                 es.orig_h, image_path, img.w, img.h);
            goto done;
        }
        if (have) sz = es;
    }
    /* prompts must lie inside the image */
    for (int b = 0; b < n_boxes; b++) {
        float *x = boxes + 4 * b;
        if (x[0] < 0 || x[1] < 0 || x[2] > sz.orig_w || x[3] > sz.orig_h) {
            fail("box %g,%g,%g,%g lies outside the %dx%d image", x[0], x[1], x[2], x[3], sz.orig_w,
                 sz.orig_h);
            goto done;
        }
    }
    for (int p = 0; p < n_points; p++) {
        float *x = points + 2 * p;
        if (x[0] < 0 || x[1] < 0 || x[0] > sz.orig_w || x[1] > sz.orig_h) {
            fail("point %g,%g lies outside the %dx%d image", x[0], x[1], sz.orig_w, sz.orig_h);
            goto done;
        }
    }
    if (mask_path) {
        mask = malloc(sizeof(float) * 65536);
        if (!mask || load_mask_input(mask_path, mask) != 0) {
            fail("%s", asam_last_error());
            goto done;
        }
    }
    if (asam_sam_load(model_path, &m) != 0) {
        fail("%s", asam_last_error());
        goto done;
    }
    if (asam_sam_predictor_init(&pred, m) != 0) {
        fail("%s", asam_last_error());
        goto done;
    }
    if (emb) {
        rc = asam_sam_predictor_set_embedding(&pred, emb, &sz);
    } else {
        rc = asam_sam_predictor_set_image(&pred, &img);
    }
    if (rc != 0) {
        fail("%s", asam_last_error());
        rc = 1;
        goto done;
    }
    rc = 1;
    /* B prompts: one per box (points shared), else one */
    int B = n_boxes ? n_boxes : 1;
    float *pts = NULL, *lab = NULL, *mk = NULL;
    if (n_points) {
        pts = malloc(sizeof(float) * (size_t)B * n_points * 2);
        lab = malloc(sizeof(float) * (size_t)B * n_points);
        for (int b = 0; b < B; b++) {
            memcpy(pts + (size_t)b * n_points * 2, points, sizeof(float) * n_points * 2);
            memcpy(lab + (size_t)b * n_points, labels, sizeof(float) * n_points);
        }
    }
    if (mask) {
        mk = malloc(sizeof(float) * (size_t)B * 65536);
        for (int b = 0; b < B; b++) memcpy(mk + (size_t)b * 65536, mask, sizeof(float) * 65536);
    }
    asam_sam_query q = {.batch = B,
                        .n_points = n_points,
                        .points = pts,
                        .labels = lab,
                        .boxes = n_boxes ? boxes : NULL,
                        .mask_input = mk};
    int prc = asam_sam_predictor_predict(&pred, &q, multimask, &res);
    free(pts);
    free(lab);
    free(mk);
    if (prc != 0) {
        fail("%s", asam_last_error());
        goto done;
    }
    int C = res.n_masks, H = res.h, W = res.w;
    int64_t hw = (int64_t)H * W;
    chosen = calloc((size_t)B, sizeof(int));
    for (int b = 0; b < B; b++)
        for (int c = 1; c < C; c++)
            if (res.iou[b * C + c] > res.iou[b * C + chosen[b]]) chosen[b] = c;

    /* outputs (each written atomically) */
    if (save_path) {
        char oh[16], ow[16], ih[16], iw[16];
        snprintf(oh, sizeof oh, "%d", H);
        snprintf(ow, sizeof ow, "%d", W);
        snprintf(ih, sizeof ih, "%d", sz.input_h);
        snprintf(iw, sizeof iw, "%d", sz.input_w);
        const char *meta[] = {"orig_h", oh, "orig_w", ow, "input_h", ih, "input_w", iw};
        int one = B == 1 && n_boxes <= 1; /* predict() shapes, else predict_torch's */
        asam_st_entry e[4];
        memset(e, 0, sizeof e);
        e[0] = (asam_st_entry){
            "image_embedding", ASAM_DT_F32, 4, {1, 256, 64, 64}, pred.embedding->data};
        if (one) {
            e[1] = (asam_st_entry){"low_res_logits", ASAM_DT_F32, 3, {C, 256, 256}, res.low_res};
            e[2] = (asam_st_entry){"iou_predictions", ASAM_DT_F32, 1, {C}, res.iou};
            e[3] = (asam_st_entry){"mask_logits", ASAM_DT_F32, 3, {C, H, W}, res.mask_logits};
        } else {
            e[1] = (asam_st_entry){"low_res_logits", ASAM_DT_F32, 4, {B, C, 256, 256}, res.low_res};
            e[2] = (asam_st_entry){"iou_predictions", ASAM_DT_F32, 2, {B, C}, res.iou};
            e[3] = (asam_st_entry){"mask_logits", ASAM_DT_F32, 4, {B, C, H, W}, res.mask_logits};
        }
        if (asam_safetensors_write(save_path, e, 4, meta, 4) != 0) {
            fail("%s", asam_last_error());
            goto done;
        }
    }
    asam_image mimg = {0};
    if (asam_image_alloc(&mimg, W, H, 1) != 0) {
        fail("out of memory");
        goto done;
    }
    cJSON *js = json ? cJSON_CreateObject() : NULL;
    cJSON *jm = js ? cJSON_AddArrayToObject(js, "masks") : NULL;
    for (int b = 0; b < B; b++) {
        const uint8_t *src = res.masks + ((int64_t)b * C + chosen[b]) * hw;
        int64_t area = 0;
        for (int64_t i = 0; i < hw; i++) {
            mimg.data[i] = src[i] ? 255 : 0;
            area += src[i];
        }
        char path[4096];
        if (B == 1)
            snprintf(path, sizeof path, "%s", out_path);
        else
            numbered_path(out_path, b, path, sizeof path);
        if (asam_image_write_png(path, &mimg) != 0) {
            fail("%s", asam_last_error());
            asam_image_free(&mimg);
            cJSON_Delete(js);
            goto done;
        }
        if (jm) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "prompt", b);
            cJSON_AddStringToObject(o, "file", path);
            cJSON *ious = cJSON_AddArrayToObject(o, "iou_predictions");
            cJSON *areas = cJSON_AddArrayToObject(o, "areas");
            for (int c = 0; c < C; c++) {
                int64_t ac = 0;
                const uint8_t *mc = res.masks + ((int64_t)b * C + c) * hw;
                for (int64_t i = 0; i < hw; i++) ac += mc[i];
                cJSON_AddItemToArray(ious, cJSON_CreateNumber(res.iou[b * C + c]));
                cJSON_AddItemToArray(areas, cJSON_CreateNumber((double)ac));
            }
            cJSON_AddNumberToObject(o, "chosen", chosen[b]);
            cJSON_AddNumberToObject(o, "iou", res.iou[b * C + chosen[b]]);
            cJSON_AddNumberToObject(o, "area", (double)area);
            cJSON_AddItemToArray(jm, o);
        }
    }
    asam_image_free(&mimg);
    if (overlay_path && write_overlay(overlay_path, &img, &res, chosen) != 0) {
        fail("%s", asam_last_error());
        cJSON_Delete(js);
        goto done;
    }
    if (js) {
        cJSON_AddStringToObject(js, "model", m->cfg.variant);
        cJSON *osz = cJSON_AddArrayToObject(js, "original_size");
        cJSON_AddItemToArray(osz, cJSON_CreateNumber(H));
        cJSON_AddItemToArray(osz, cJSON_CreateNumber(W));
        cJSON *isz = cJSON_AddArrayToObject(js, "input_size");
        cJSON_AddItemToArray(isz, cJSON_CreateNumber(sz.input_h));
        cJSON_AddItemToArray(isz, cJSON_CreateNumber(sz.input_w));
        char *s = cJSON_Print(js);
        if (s) puts(s);
        free(s);
        cJSON_Delete(js);
    }
    rc = 0;
done:
    free(chosen);
    asam_sam_result_free(&res);
    if (pred.ctx) asam_sam_predictor_free(&pred);
    asam_sam_free(m);
    free(emb);
    free(mask);
    asam_image_free(&img);
    return rc;
}
