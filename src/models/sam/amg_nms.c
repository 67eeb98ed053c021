/* Box non-maximum suppression exactly as torchvision 0.14's batched_nms on CPU, including the
 * order in which tied scores are visited.
 *
 * The automatic mask generator feeds NMS many ties (all masks of one crop layer share a score
 * in the cross-crop NMS; scores are 0/1 after hole/island removal), so which duplicate
 * survives, and the output order, depend on how ties are ordered:
 *   - the nms kernel visits boxes in a STABLE descending sort (ties in index order);
 *   - with more than 1000 boxes batched_nms takes its "vanilla" path, which re-sorts the kept
 *     indices with torch.sort(descending=True): on CPU (torch 1.13) libstdc++'s std::sort over
 *     (score, index) pairs, an introsort that does NOT keep ties in index order.
 * asam_amg_sort_desc() replays that std::sort step by step (GCC's bits/stl_algo.h and
 * stl_heap.h: median-of-three pivot, unguarded partition, heapsort past the depth limit, final
 * insertion sort over runs of 16). Both orders are checked against torch and torchvision. */
#include "asam/sam_amg.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float key;
    int64_t idx;
} kv;

/* torch's KeyValueCompDesc: NaN sorts first, then larger keys. */
static int before(const kv *a, const kv *b) {
    return (isnan(a->key) && !isnan(b->key)) || a->key > b->key;
}

static void swap_kv(kv *a, kv *b) {
    kv t = *a;
    *a = *b;
    *b = t;
}

static void push_heap(kv *first, int64_t hole, int64_t top, kv value) {
    int64_t parent = (hole - 1) / 2;
    while (hole > top && before(&first[parent], &value)) {
        first[hole] = first[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    first[hole] = value;
}

static void adjust_heap(kv *first, int64_t hole, int64_t len, kv value) {
    int64_t top = hole, child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (before(&first[child], &first[child - 1])) child--;
        first[hole] = first[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        first[hole] = first[child - 1];
        hole = child - 1;
    }
    push_heap(first, hole, top, value);
}

/* std::partial_sort(first, last, last): make_heap then sort_heap. */
static void heap_sort(kv *first, int64_t len) {
    if (len < 2) return;
    for (int64_t parent = (len - 2) / 2;; parent--) {
        adjust_heap(first, parent, len, first[parent]);
        if (parent == 0) break;
    }
    for (int64_t last = len - 1; last > 0; last--) {
        kv value = first[last];
        first[last] = first[0];
        adjust_heap(first, 0, last, value);
    }
}

static void move_median_to_first(kv *result, kv *a, kv *b, kv *c) {
    if (before(a, b)) {
        if (before(b, c))
            swap_kv(result, b);
        else if (before(a, c))
            swap_kv(result, c);
        else
            swap_kv(result, a);
    } else if (before(a, c)) {
        swap_kv(result, a);
    } else if (before(b, c)) {
        swap_kv(result, c);
    } else {
        swap_kv(result, b);
    }
}

static kv *unguarded_partition(kv *first, kv *last, const kv *pivot) {
    for (;;) {
        while (before(first, pivot)) first++;
        last--;
        while (before(pivot, last)) last--;
        if (!(first < last)) return first;
        swap_kv(first, last);
        first++;
    }
}

static void introsort_loop(kv *first, kv *last, int depth) {
    while (last - first > 16) {
        if (depth == 0) {
            heap_sort(first, last - first);
            return;
        }
        depth--;
        kv *mid = first + (last - first) / 2;
        move_median_to_first(first, first + 1, mid, last - 1);
        kv *cut = unguarded_partition(first + 1, last, first);
        introsort_loop(cut, last, depth);
        last = cut;
    }
}

static void unguarded_linear_insert(kv *last) {
    kv val = *last;
    kv *next = last - 1;
    while (before(&val, next)) {
        *last = *next;
        last = next;
        next--;
    }
    *last = val;
}

static void insertion_sort(kv *first, kv *last) {
    if (first == last) return;
    for (kv *i = first + 1; i != last; i++) {
        if (before(i, first)) {
            kv val = *i;
            for (kv *p = i; p != first; p--) p[0] = p[-1];
            *first = val;
        } else {
            unguarded_linear_insert(i);
        }
    }
}

void asam_amg_sort_desc(const float *scores, int64_t n, int64_t *order) {
    if (n <= 0) return;
    kv *a = malloc(sizeof(kv) * (size_t)n);
    if (!a) { /* never reached in practice; keep a valid (stable) order rather than none */
        for (int64_t i = 0; i < n; i++) order[i] = i;
        return;
    }
    for (int64_t i = 0; i < n; i++) a[i] = (kv){scores[i], i};
    int lg = 63 - __builtin_clzll((unsigned long long)n);
    introsort_loop(a, a + n, 2 * lg);
    if (n > 16) {
        insertion_sort(a, a + 16);
        for (kv *i = a + 16; i != a + n; i++) unguarded_linear_insert(i);
    } else {
        insertion_sort(a, a + n);
    }
    for (int64_t i = 0; i < n; i++) order[i] = a[i].idx;
    free(a);
}

/* Stable descending order (NaN first), ties by index: the nms kernel's sort. */
static int stable_desc(const void *pa, const void *pb) {
    const kv *a = pa, *b = pb;
    if (before(a, b)) return -1;
    if (before(b, a)) return 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* torchvision nms_kernel_impl<float>: IoU in float32, compared with the double threshold. */
static int64_t nms_plain(const float *boxes, const float *scores, int64_t n, double thresh,
                         int64_t *keep) {
    kv *order = malloc(sizeof(kv) * (size_t)n);
    float *areas = malloc(sizeof(float) * (size_t)n);
    unsigned char *suppressed = calloc((size_t)n, 1);
    if (!order || !areas || !suppressed) {
        free(order);
        free(areas);
        free(suppressed);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        const float *b = boxes + 4 * i;
        areas[i] = (b[2] - b[0]) * (b[3] - b[1]);
    }
    for (int64_t i = 0; i < n; i++) order[i] = (kv){scores[i], i};
    qsort(order, (size_t)n, sizeof(kv), stable_desc);
    int64_t n_keep = 0;
    for (int64_t oi = 0; oi < n; oi++) {
        int64_t i = order[oi].idx;
        if (suppressed[i]) continue;
        keep[n_keep++] = i;
        const float *bi = boxes + 4 * i;
        for (int64_t oj = oi + 1; oj < n; oj++) {
            int64_t j = order[oj].idx;
            if (suppressed[j]) continue;
            const float *bj = boxes + 4 * j;
            float xx1 = fmaxf(bi[0], bj[0]), yy1 = fmaxf(bi[1], bj[1]);
            float xx2 = fminf(bi[2], bj[2]), yy2 = fminf(bi[3], bj[3]);
            float w = fmaxf(0.0f, xx2 - xx1), h = fmaxf(0.0f, yy2 - yy1);
            float inter = w * h;
            float ovr = inter / (areas[i] + areas[j] - inter);
            if ((double)ovr > thresh) suppressed[j] = 1;
        }
    }
    free(order);
    free(areas);
    free(suppressed);
    return n_keep;
}

int64_t asam_amg_nms(const float *boxes, const float *scores, int64_t n, double thresh,
                     int64_t *keep) {
    if (n <= 0) return 0;
    /* One category: the "coordinate trick" offsets every box by 0, so both of batched_nms's
     * paths run plain nms; they differ only in the order they return. */
    int64_t k = nms_plain(boxes, scores, n, thresh, keep);
    if (k < 0 || n * 4 <= 4000) return k;
    /* > 1000 boxes: _batched_nms_vanilla returns the kept indices in index order re-sorted by
     * score with the same unstable sort. */
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)k);
    float *s = malloc(sizeof(float) * (size_t)k);
    int64_t *order = malloc(sizeof(int64_t) * (size_t)k);
    unsigned char *mark = calloc((size_t)n, 1);
    if (!idx || !s || !order || !mark) {
        free(idx), free(s), free(order), free(mark);
        return -1;
    }
    for (int64_t i = 0; i < k; i++) mark[keep[i]] = 1;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (mark[i]) idx[m++] = i;
    for (int64_t i = 0; i < k; i++) s[i] = scores[idx[i]];
    asam_amg_sort_desc(s, k, order);
    for (int64_t i = 0; i < k; i++) keep[i] = idx[order[i]];
    free(idx), free(s), free(order), free(mark);
    return k;
}
