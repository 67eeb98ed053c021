/* Small-region clean-up of generated masks, as the official remove_small_regions (which calls
 * cv2.connectedComponentsWithStats with 8-connectivity), and the tight box of a mask.
 *
 * Components are found with a union-find over the raster scan. Their labels follow OpenCV's
 * order, which only matters when every island is small and two tie for the largest (the
 * official code then keeps argmax, the first in label order): OpenCV's default 8-connectivity
 * algorithm labels 2x2 pixel blocks in raster order, so a component's label rank is that of
 * the first 2x2 block holding one of its pixels (all pixels of a block are 8-connected, so no
 * block holds two components). */
#include "asam/sam_amg.h"

#include "asam/error.h"
#include "asam/util.h"

#include <stdlib.h>
#include <string.h>

void asam_amg_mask_box(const uint8_t *mask, int h, int w, int64_t box[4]) {
    // ref: segment-anything/segment_anything/utils/amg.py:320
    // edges are the first / last row and column holding a pixel (inclusive)
    float b[4];
    int64_t n = asam_mask_box_u8(mask, w, h, b);
    // ref: segment-anything/segment_anything/utils/amg.py:336
    for (int k = 0; k < 4; k++) box[k] = n ? (int64_t)b[k] : 0; /* empty mask: [0, 0, 0, 0] */
}

typedef struct {
    int64_t block;
    int32_t root;
} root_key;

static int by_block(const void *a, const void *b) {
    int64_t x = ((const root_key *)a)->block, y = ((const root_key *)b)->block;
    return (x > y) - (x < y);
}

static int32_t find_root(int32_t *parent, int32_t a) {
    while (parent[a] != a) {
        parent[a] = parent[parent[a]];
        a = parent[a];
    }
    return a;
}

static void unite(int32_t *parent, int32_t a, int32_t b) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a < b)
        parent[b] = a;
    else if (b < a)
        parent[a] = b;
}

/* Label the 8-connected components of fg (0/1): lab[p] = component id 1..n in OpenCV order
 * (0 = background), sizes[1..n] their pixel counts. Returns n, or -1 (no memory). */
static int32_t label_components(const uint8_t *fg, int h, int w, int32_t *lab,
                                int64_t **sizes_out) {
    size_t hw = (size_t)h * w;
    /* provisional labels: at most one per pixel */
    int32_t *parent = malloc(sizeof(int32_t) * (hw + 1));
    if (!parent) return -1;
    int32_t next = 1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t p = (size_t)y * w + x;
            if (!fg[p]) {
                lab[p] = 0;
                continue;
            }
            int32_t l = 0;
            /* already-visited 8-neighbours: W, NW, N, NE */
            const int dx[4] = {-1, -1, 0, 1}, dy[4] = {0, -1, -1, -1};
            for (int k = 0; k < 4; k++) {
                int xx = x + dx[k], yy = y + dy[k];
                if (xx < 0 || xx >= w || yy < 0) continue;
                int32_t nl = lab[(size_t)yy * w + xx];
                if (!nl) continue;
                if (!l)
                    l = nl;
                else
                    unite(parent, l, nl);
            }
            if (!l) {
                l = next++;
                parent[l] = l;
            }
            lab[p] = l;
        }
    /* first 2x2 block (block raster order) of each root: the OpenCV label order */
    int bw = (w + 1) / 2;
    int64_t *first_block = malloc(sizeof(int64_t) * (size_t)next);
    if (!first_block) {
        free(parent);
        return -1;
    }
    for (int32_t i = 0; i < next; i++) first_block[i] = INT64_MAX;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t p = (size_t)y * w + x;
            if (!lab[p]) continue;
            int32_t r = find_root(parent, lab[p]);
            lab[p] = r;
            int64_t blk = (int64_t)(y / 2) * bw + x / 2;
            if (blk < first_block[r]) first_block[r] = blk;
        }
    int32_t n = 0;
    for (int32_t i = 1; i < next; i++) n += parent[i] == i;
    root_key *keys = malloc(sizeof(root_key) * (size_t)(n ? n : 1));
    int64_t *sizes = calloc((size_t)n + 1, sizeof(int64_t));
    if (!keys || !sizes) {
        free(parent), free(first_block), free(keys), free(sizes);
        return -1;
    }
    n = 0;
    for (int32_t i = 1; i < next; i++)
        if (parent[i] == i) keys[n++] = (root_key){first_block[i], i};
    qsort(keys, (size_t)n, sizeof(root_key), by_block);
    /* parent[] now maps a root to its final label */
    for (int32_t i = 0; i < n; i++) parent[keys[i].root] = i + 1;
    for (size_t p = 0; p < hw; p++)
        if (lab[p]) {
            lab[p] = parent[lab[p]];
            sizes[lab[p]]++;
        }
    free(parent), free(first_block), free(keys);
    *sizes_out = sizes;
    return n;
}

int asam_amg_remove_small_regions(uint8_t *mask, int h, int w, double area_thresh, int holes,
                                  int *changed) {
    *changed = 0;
    size_t hw = (size_t)h * w;
    if (hw == 0) return 0;
    // ref: segment-anything/segment_anything/utils/amg.py:278
    // holes are the components of the inverted mask; its label 0 is the mask itself
    uint8_t *work = malloc(hw);
    int32_t *lab = malloc(sizeof(int32_t) * hw);
    if (!work || !lab) {
        free(work), free(lab);
        return asam_error("amg: out of memory (%dx%d mask)", w, h);
    }
    for (size_t p = 0; p < hw; p++) work[p] = holes ? !mask[p] : mask[p] != 0;
    // ref: segment-anything/segment_anything/utils/amg.py:279
    int64_t *sizes = NULL;
    int32_t n = label_components(work, h, w, lab, &sizes);
    free(work);
    if (n < 0) {
        free(lab);
        return asam_error("amg: out of memory (%dx%d mask)", w, h);
    }
    // ref: segment-anything/segment_anything/utils/amg.py:281
    uint8_t *fill = calloc((size_t)n + 1, 1); /* labels whose pixels form the new mask */
    if (!fill) {
        free(lab), free(sizes);
        return asam_error("amg: out of memory");
    }
    int n_small = 0;
    for (int32_t i = 1; i <= n; i++) n_small += (double)sizes[i] < area_thresh;
    if (n_small == 0) {
        free(lab), free(sizes), free(fill);
        return 0;
    }
    if (holes) {
        // ref: segment-anything/segment_anything/utils/amg.py:284
        // the mask (label 0) plus every small hole
        fill[0] = 1;
        for (int32_t i = 1; i <= n; i++) fill[i] = (double)sizes[i] < area_thresh;
    } else {
        // ref: segment-anything/segment_anything/utils/amg.py:286
        int any = 0;
        for (int32_t i = 1; i <= n; i++) any |= fill[i] = !((double)sizes[i] < area_thresh);
        // ref: segment-anything/segment_anything/utils/amg.py:288
        // every island is small: keep the largest (the first in label order on ties)
        if (!any) {
            int32_t best = 1;
            for (int32_t i = 2; i <= n; i++)
                if (sizes[i] > sizes[best]) best = i;
            fill[best] = 1;
        }
    }
    // ref: segment-anything/segment_anything/utils/amg.py:290
    for (size_t p = 0; p < hw; p++) mask[p] = fill[lab[p]];
    *changed = 1;
    free(lab), free(sizes), free(fill);
    return 0;
}
