/* asam segment for EfficientSAM: the same options and outputs as for SAM
 * (cmd_segment.c), with EfficientSAM's official pipeline: the image stretched
 * to 1024x1024, every query = the given points followed by the box as two
 * points labelled 2 / 3 (at most 6 points per query), the logits resized
 * bicubically to the original size, masks = logits >= 0. */
#include "cli/segment_esam.h"
#include "asam/checkpoint.h"
#include "asam/efficientsam.h"
#include "asam/error.h"
#include "cli/cli_util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "mask.png" -> "mask_3.png" */
static void numbered_path(const char *path, int i, char *out, size_t n) {
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) dot = path + strlen(path);
    snprintf(out, n, "%.*s_%d%s", (int)(dot - path), path, i, dot);
}

typedef struct {
    asam_image img;
    int h, w; /* original size */
    asam_esam *m;
    asam_esam_predictor pred;
    asam_esam_result res;
    float *emb; /* a reused embedding (--embedding) */
    int Q, K, *chosen;
} esam_run;

static void run_free(esam_run *r) {
    free(r->chosen);
    asam_esam_result_free(&r->res);
    if (r->pred.ctx) asam_esam_predictor_free(&r->pred);
    asam_esam_free(r->m);
    free(r->emb);
    asam_image_free(&r->img);
}

static int meta_int(const asam_checkpoint *ck, const char *key, int *v) {
    const char *s = asam_checkpoint_metadata(ck, key);
    char *end;
    long x = s ? strtol(s, &end, 10) : 0;
    if (!s || *end || x < 1 || x > 1 << 20) return -1;
    *v = (int)x;
    return 0;
}

/* --embedding: the image_embedding of an EfficientSAM --save file, with its
 * original size. */
static int load_embedding(const char *path, int D, esam_run *r) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck) != 0) return -1;
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "image_embedding");
    int h = 0, w = 0, rc = 0;
    if (!t || t->numel != (int64_t)D * 64 * 64)
        rc = asam_error("%s: no image_embedding of %dx64x64 values (from this model)", path, D);
    else if (meta_int(ck, "orig_h", &h) || meta_int(ck, "orig_w", &w))
        rc = asam_error("%s: no orig_h/orig_w metadata", path);
    else if (r->img.data && (h != r->img.h || w != r->img.w))
        rc = asam_error("%s: embedding is for a %dx%d image, the image is %dx%d", path, w, h,
                        r->img.w, r->img.h);
    if (!rc && !(r->emb = malloc(sizeof(float) * (size_t)t->numel)))
        rc = asam_error("out of memory");
    if (!rc) rc = asam_ckpt_read_f32(ck, t, r->emb);
    asam_checkpoint_close(ck);
    r->h = h;
    r->w = w;
    return rc;
}

static int run(const segment_esam_args *a, esam_run *r) {
    if (a->image_path) {
        if (asam_image_read(a->image_path, 3, &r->img) != 0) return -1;
        r->h = r->img.h;
        r->w = r->img.w;
    }
    if (asam_esam_load_frozen(a->model_path, 0, &r->m) != 0) return -1;
    if (a->emb_path && load_embedding(a->emb_path, asam_esam_cfg(r->m)->dim, r)) return -1;
    for (int b = 0; b < a->n_boxes; b++) {
        const float *x = a->boxes + 4 * b;
        if (x[0] < 0 || x[1] < 0 || x[2] > r->w || x[3] > r->h)
            return asam_error("box %g,%g,%g,%g lies outside the %dx%d image", x[0], x[1], x[2],
                              x[3], r->w, r->h);
    }
    for (int p = 0; p < a->n_points; p++) {
        const float *x = a->points + 2 * p;
        if (x[0] < 0 || x[1] < 0 || x[0] > r->w || x[1] > r->h)
            return asam_error("point %g,%g lies outside the %dx%d image", x[0], x[1], r->w, r->h);
    }
    /* each query: the points, then its box as two points labelled 2 (top-left)
     * and 3 */
    const int Q = r->Q = a->n_boxes ? a->n_boxes : 1, K = r->K = a->n_points + (a->n_boxes ? 2 : 0);
    if (K > ASAM_ESAM_POINTS)
        return asam_error("EfficientSAM takes at most %d prompt points per query (a box counts "
                          "as 2); got %d",
                          ASAM_ESAM_POINTS, K);
    float xy[ASAM_ESAM_POINTS * 2 * 256], lab[ASAM_ESAM_POINTS * 256];
    if (Q > 256) return asam_error("at most 256 boxes");
    for (int q = 0; q < Q; q++) {
        for (int i = 0; i < a->n_points; i++) {
            xy[2 * (q * K + i)] = a->points[2 * i];
            xy[2 * (q * K + i) + 1] = a->points[2 * i + 1];
            lab[q * K + i] = a->labels[i];
        }
        for (int k = 0; a->n_boxes && k < 2; k++) {
            xy[2 * (q * K + a->n_points + k)] = a->boxes[4 * q + 2 * k];
            xy[2 * (q * K + a->n_points + k) + 1] = a->boxes[4 * q + 2 * k + 1];
            lab[q * K + a->n_points + k] = 2.0f + (float)k;
        }
    }
    if (asam_esam_predictor_init(&r->pred, r->m) != 0) return -1;
    if (r->emb ? asam_esam_predictor_set_embedding(&r->pred, r->emb, r->h, r->w)
               : asam_esam_predictor_set_image(&r->pred, &r->img))
        return -1;
    if (asam_esam_predictor_predict(&r->pred, Q, K, xy, lab, a->multimask, &r->res)) return -1;
    const int C = r->res.n_masks;
    r->chosen = calloc((size_t)Q, sizeof(int));
    if (!r->chosen) return asam_error("out of memory");
    /* the official example keeps the mask with the highest predicted IoU */
    for (int q = 0; q < Q; q++)
        for (int c = 1; c < C; c++)
            if (r->res.iou[q * C + c] > r->res.iou[q * C + r->chosen[q]]) r->chosen[q] = c;
    return 0;
}

static int write_save(const segment_esam_args *a, const esam_run *r) {
    const asam_esam_result *s = &r->res;
    const int Q = r->Q, C = s->n_masks, H = s->h, W = s->w, D = asam_esam_cfg(r->m)->dim;
    char oh[16], ow[16];
    snprintf(oh, sizeof oh, "%d", H);
    snprintf(ow, sizeof ow, "%d", W);
    const char *meta[] = {"orig_h", oh, "orig_w", ow, "family", "efficientsam"};
    int one = Q == 1 && a->n_boxes <= 1;
    asam_st_entry e[4];
    memset(e, 0, sizeof e);
    e[0] =
        (asam_st_entry){"image_embedding", ASAM_DT_F32, 4, {1, D, 64, 64}, r->pred.embedding->data};
    if (one) {
        e[1] = (asam_st_entry){"low_res_logits", ASAM_DT_F32, 3, {C, 256, 256}, s->low_res};
        e[2] = (asam_st_entry){"iou_predictions", ASAM_DT_F32, 1, {C}, s->iou};
        e[3] = (asam_st_entry){"mask_logits", ASAM_DT_F32, 3, {C, H, W}, s->mask_logits};
    } else {
        e[1] = (asam_st_entry){"low_res_logits", ASAM_DT_F32, 4, {Q, C, 256, 256}, s->low_res};
        e[2] = (asam_st_entry){"iou_predictions", ASAM_DT_F32, 2, {Q, C}, s->iou};
        e[3] = (asam_st_entry){"mask_logits", ASAM_DT_F32, 4, {Q, C, H, W}, s->mask_logits};
    }
    return asam_safetensors_write(a->save_path, e, 4, meta, 3);
}

static int write_overlay(const char *path, const esam_run *r) {
    static const uint8_t colours[6][3] = {{30, 144, 255}, {255, 64, 64},  {64, 220, 64},
                                          {255, 200, 0},  {200, 64, 255}, {0, 220, 220}};
    asam_image o = {0};
    if (asam_image_alloc(&o, r->img.w, r->img.h, 3) != 0) return -1;
    memcpy(o.data, r->img.data, (size_t)r->img.w * r->img.h * 3);
    int64_t hw = (int64_t)r->img.w * r->img.h;
    for (int q = 0; q < r->Q; q++) {
        const uint8_t *m = r->res.masks + ((int64_t)q * r->res.n_masks + r->chosen[q]) * hw;
        for (int64_t i = 0; i < hw; i++)
            if (m[i])
                for (int k = 0; k < 3; k++)
                    o.data[i * 3 + k] = (uint8_t)((o.data[i * 3 + k] + colours[q % 6][k] + 1) / 2);
    }
    int rc = asam_image_write_png(path, &o);
    asam_image_free(&o);
    return rc;
}

static int write_outputs(const segment_esam_args *a, const esam_run *r) {
    if (a->save_path && write_save(a, r) != 0) return -1;
    const asam_esam_result *s = &r->res;
    const int C = s->n_masks;
    const int64_t hw = (int64_t)s->h * s->w;
    asam_image mimg = {0};
    if (asam_image_alloc(&mimg, s->w, s->h, 1) != 0) return -1;
    cJSON *js = a->json ? cJSON_CreateObject() : NULL;
    cJSON *jm = js ? cJSON_AddArrayToObject(js, "masks") : NULL;
    int rc = 0;
    for (int q = 0; q < r->Q && !rc; q++) {
        const uint8_t *src = s->masks + ((int64_t)q * C + r->chosen[q]) * hw;
        int64_t area = 0;
        for (int64_t i = 0; i < hw; i++) {
            mimg.data[i] = src[i] ? 255 : 0;
            area += src[i];
        }
        char path[4096];
        if (r->Q == 1)
            snprintf(path, sizeof path, "%s", a->out_path);
        else
            numbered_path(a->out_path, q, path, sizeof path);
        rc = asam_image_write_png(path, &mimg);
        if (rc || !jm) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "prompt", q);
        cJSON_AddStringToObject(o, "file", path);
        cJSON *ious = cJSON_AddArrayToObject(o, "iou_predictions");
        cJSON *areas = cJSON_AddArrayToObject(o, "areas");
        for (int c = 0; c < C; c++) {
            int64_t ac = 0;
            const uint8_t *mc = s->masks + ((int64_t)q * C + c) * hw;
            for (int64_t i = 0; i < hw; i++) ac += mc[i];
            cJSON_AddItemToArray(ious, cJSON_CreateNumber(s->iou[q * C + c]));
            cJSON_AddItemToArray(areas, cJSON_CreateNumber((double)ac));
        }
        cJSON_AddNumberToObject(o, "chosen", r->chosen[q]);
        cJSON_AddNumberToObject(o, "iou", s->iou[q * C + r->chosen[q]]);
        cJSON_AddNumberToObject(o, "area", (double)area);
        cJSON_AddItemToArray(jm, o);
    }
    asam_image_free(&mimg);
    if (!rc && a->overlay_path) rc = write_overlay(a->overlay_path, r);
    if (!rc && js) {
        cJSON_AddStringToObject(js, "model", asam_esam_cfg(r->m)->variant);
        cJSON_AddStringToObject(js, "family", "efficientsam");
        cJSON *osz = cJSON_AddArrayToObject(js, "original_size");
        cJSON_AddItemToArray(osz, cJSON_CreateNumber(s->h));
        cJSON_AddItemToArray(osz, cJSON_CreateNumber(s->w));
        char *txt = cJSON_Print(js);
        if (txt) puts(txt);
        free(txt);
    } else if (!rc) { /* without --json: one summary line, never silence */
        printf("wrote %d mask%s to %s%s\n", r->Q, r->Q == 1 ? "" : "s", a->out_path,
               r->Q == 1 ? "" : " (numbered)");
    }
    cJSON_Delete(js);
    return rc;
}

int segment_efficientsam(const segment_esam_args *a) {
    if (a->mask_path) {
        fprintf(stderr,
                "asam segment: %s is an EfficientSAM checkpoint: it takes no "
                "--mask-input (points and boxes only)\n",
                a->model_path);
        return 2;
    }
    esam_run r = {0};
    int rc = run(a, &r) || write_outputs(a, &r);
    if (rc) cli_fail("segment", "%s", asam_last_error());
    run_free(&r);
    return rc ? 1 : 0;
}
