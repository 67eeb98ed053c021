/* CLIP BPE tokenizer (openai/CLIP simple_tokenizer, HF CLIPTokenizer), by hand for UTF-8.
 *
 * Pipeline: text clean-up (a subset of ftfy.fix_text, then html.unescape twice, whitespace
 * collapse, strip, lower-case) -> pre-tokenisation with the CLIP pattern
 *   <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * -> UTF-8 bytes -> GPT-2 byte->unicode map -> BPE by merge rank with "</w>" on the last
 * symbol -> vocab ids.
 *
 * Unicode coverage: letter/number classes, simple lower-case mappings, canonical composition
 * pairs and the fullwidth/halfwidth forms come from generated UCD 14.0 tables (clip_unicode.h),
 * so every script is classified like Python's `regex`. Not covered: ftfy's mojibake repair
 * (fix_encoding), NFC's canonical reordering of several combining marks and Hangul jamo
 * composition, Python's special lower-casing other than U+0130 and the final sigma. */
#include "asam/sd.h"
#include "asam/data_dir.h"
#include "asam/error.h"
#include "asam/fileio.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip_unicode.h"

/* ---- string -> int hash table (open addressing) ------------------------------------------ */
typedef struct {
    char **keys;
    int *vals;
    size_t cap; /* power of two */
    size_t n;
} strmap;

static uint64_t hash_str(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int strmap_init(strmap *m, size_t cap) {
    m->cap = cap;
    m->n = 0;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    return m->keys && m->vals ? 0 : -1;
}

static void strmap_free(strmap *m) {
    if (m->keys)
        for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
}

/* Look up the n bytes at s; returns the value or -1. */
static int strmap_get(const strmap *m, const char *s, size_t n) {
    size_t i = hash_str(s, n) & (m->cap - 1);
    while (m->keys[i]) {
        if (strlen(m->keys[i]) == n && !memcmp(m->keys[i], s, n)) return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

/* Insert or overwrite (the last value wins, as in the Python dicts HF/openai build from the
 * vocab and merge lists). The table never grows: callers size it for at most cap/2 keys. */
static int strmap_put(strmap *m, const char *s, size_t n, int v) {
    if ((m->n + 1) * 2 > m->cap) return -1;
    size_t i = hash_str(s, n) & (m->cap - 1);
    while (m->keys[i]) {
        if (strlen(m->keys[i]) == n && !memcmp(m->keys[i], s, n)) {
            m->vals[i] = v;
            return 0;
        }
        i = (i + 1) & (m->cap - 1);
    }
    char *k = malloc(n + 1);
    if (!k) return -1;
    memcpy(k, s, n);
    k[n] = 0;
    m->keys[i] = k;
    m->vals[i] = v;
    m->n++;
    return 0;
}

struct asam_clip_tokenizer {
    strmap vocab;          /* token -> id */
    strmap merges;         /* "a b" -> rank */
    char byte_enc[256][3]; /* GPT-2 bytes_to_unicode as UTF-8 (1-2 bytes) */
};

/* ---- UTF-8 -------------------------------------------------------------------------------- */
/* Decode s into code points (invalid bytes become U+FFFD). *n receives the count. */
static uint32_t *utf8_decode(const char *s, size_t *n) {
    size_t len = strlen(s);
    uint32_t *out = malloc((len + 1) * sizeof *out);
    if (!out) return NULL;
    size_t k = 0;
    const uint8_t *p = (const uint8_t *)s, *end = p + len;
    while (p < end) {
        uint32_t c = *p;
        int extra = c < 0x80             ? 0
                    : (c & 0xE0) == 0xC0 ? 1
                    : (c & 0xF0) == 0xE0 ? 2
                    : (c & 0xF8) == 0xF0 ? 3
                                         : -1;
        if (extra < 0 || p + extra >= end) { /* bad lead byte or truncated sequence */
            out[k++] = 0xFFFD;
            p++;
            continue;
        }
        if (extra == 0) {
            out[k++] = c;
            p++;
            continue;
        }
        uint32_t cp = c & (0x3F >> extra);
        int ok = 1;
        for (int i = 1; i <= extra; i++) {
            if ((p[i] & 0xC0) != 0x80) {
                ok = 0;
                break;
            }
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if (!ok || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000) ||
            cp < (extra == 1   ? 0x80u
                  : extra == 2 ? 0x800u
                               : 0x10000u)) {
            out[k++] = 0xFFFD;
            p++;
            continue;
        }
        out[k++] = cp;
        p += extra + 1;
    }
    *n = k;
    return out;
}

static int utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static char *utf8_encode(const uint32_t *cp, size_t n) {
    char *o = malloc(4 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)utf8_put(cp[i], o + k);
    o[k] = 0;
    return o;
}

/* ---- character classes ------------------------------------------------------------------- */
static int in_ranges(const uni_range *r, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid].lo)
            hi = mid;
        else if (c > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
static int is_letter(uint32_t c) {
    if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    return in_ranges(uni_letters, NELEM(uni_letters), c);
}
static int is_number(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    return in_ranges(uni_numbers, NELEM(uni_numbers), c);
}
static int is_mark(uint32_t c) {
    return c >= 0x300 && in_ranges(uni_marks, NELEM(uni_marks), c);
}
/* Python str.isspace() / re's \s on str. */
static int is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}
static uint32_t to_lower(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    size_t lo = 0, hi = NELEM(uni_lower);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < uni_lower[mid].lo)
            hi = mid;
        else if (c > uni_lower[mid].hi)
            lo = mid + 1;
        else {
            const uni_lower_run *r = &uni_lower[mid];
            if ((c - r->lo) % r->stride) return c;
            return (uint32_t)((int64_t)c + r->delta);
        }
    }
    return c;
}

/* ---- text clean-up ------------------------------------------------------------------------ */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} cpbuf;

static int cp_push(cpbuf *b, uint32_t c) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        uint32_t *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv) return -1;
        b->v = nv;
        b->cap = nc;
    }
    b->v[b->n++] = c;
    return 0;
}

/* Named HTML entities we decode (html.unescape knows 2231; these are the common ones). */
static const struct {
    const char *name;
    uint32_t cp;
    int legacy; /* also accepted without ';' by html.unescape */
} html_entities[] = {
    {"amp", '&', 1},      {"lt", '<', 1},        {"gt", '>', 1},       {"quot", '"', 1},
    {"apos", '\'', 0},    {"nbsp", 0xA0, 1},     {"copy", 0xA9, 1},    {"reg", 0xAE, 1},
    {"trade", 0x2122, 0}, {"hellip", 0x2026, 0}, {"mdash", 0x2014, 0}, {"ndash", 0x2013, 0},
    {"lsquo", 0x2018, 0}, {"rsquo", 0x2019, 0},  {"ldquo", 0x201C, 0}, {"rdquo", 0x201D, 0},
    {"laquo", 0xAB, 1},   {"raquo", 0xBB, 1},    {"deg", 0xB0, 1},     {"times", 0xD7, 1},
    {"eacute", 0xE9, 1},  {"egrave", 0xE8, 1},   {"agrave", 0xE0, 1},  {"aacute", 0xE1, 1},
    {"ouml", 0xF6, 1},    {"uuml", 0xFC, 1},     {"auml", 0xE4, 1},    {"szlig", 0xDF, 1},
    {"ccedil", 0xE7, 1},  {"euro", 0x20AC, 0},   {"pound", 0xA3, 1},   {"middot", 0xB7, 1},
};

/* One html.unescape pass over v[0..n). need_semicolon: ftfy only decodes "&name;". */
static int html_unescape(const uint32_t *v, size_t n, cpbuf *out, int need_semicolon) {
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] != '&') {
            if (cp_push(out, v[i])) return -1;
            continue;
        }
        size_t j = i + 1;
        uint32_t cp = 0;
        size_t end = 0; /* index after the entity, 0 = not an entity */
        if (j < n && v[j] == '#') {
            j++;
            int hex = j < n && (v[j] == 'x' || v[j] == 'X');
            if (hex) j++;
            size_t d0 = j;
            uint64_t val = 0;
            while (j < n && j - d0 < 10) {
                uint32_t c = v[j];
                int dig = (c >= '0' && c <= '9') ? (int)(c - '0')
                          : hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f'
                              ? (int)((c | 0x20) - 'a' + 10)
                              : -1;
                if (dig < 0) break;
                val = val * (hex ? 16 : 10) + (uint64_t)dig;
                j++;
            }
            if (j > d0) {
                int semi = j < n && v[j] == ';';
                if (semi || !need_semicolon) {
                    cp = (val == 0 || val > 0x10FFFF || (val >= 0xD800 && val < 0xE000))
                             ? 0xFFFD
                             : (uint32_t)val;
                    end = j + (size_t)semi;
                }
            }
        } else {
            for (size_t e = 0; e < NELEM(html_entities); e++) {
                size_t L = strlen(html_entities[e].name), k;
                for (k = 0; k < L && j + k < n && v[j + k] == (uint8_t)html_entities[e].name[k];
                     k++) {
                }
                if (k != L) continue;
                int semi = j + L < n && v[j + L] == ';';
                if (semi || (!need_semicolon && html_entities[e].legacy)) {
                    cp = html_entities[e].cp;
                    end = j + L + (size_t)semi;
                    break;
                }
            }
        }
        if (!end) {
            if (cp_push(out, '&')) return -1;
            continue;
        }
        if (cp_push(out, cp)) return -1;
        i = end - 1;
    }
    return 0;
}

static uint32_t compose(uint32_t a, uint32_t b) {
    size_t lo = 0, hi = NELEM(uni_compose);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uni_comp *c = &uni_compose[mid];
        if (a < c->a || (a == c->a && b < c->b))
            hi = mid;
        else if (a > c->a || b > c->b)
            lo = mid + 1;
        else
            return c->c;
    }
    return 0;
}

/* The ftfy.fix_text steps that matter for prompts (ftfy 6 defaults), in ftfy's order. Long on
 * purpose: the steps stay in one place so their order (which changes results) is visible. */
static int ftfy_fix(const uint32_t *v, size_t n, cpbuf *out) {
    cpbuf t = {0};
    int has_lt = 0;
    for (size_t i = 0; i < n; i++) has_lt |= v[i] == '<';
    /* unescape_html (skipped when the text looks like HTML, i.e. contains '<') */
    if (!has_lt) {
        if (html_unescape(v, n, &t, 1)) return -1;
    } else {
        for (size_t i = 0; i < n; i++)
            if (cp_push(&t, v[i])) return -1;
    }
    out->n = 0;
    for (size_t i = 0; i < t.n; i++) {
        uint32_t c = t.v[i];
        const char *lig = NULL;
        switch (c) { /* fix_latin_ligatures */
        case 0x132:
            lig = "IJ";
            break;
        case 0x133:
            lig = "ij";
            break;
        case 0x1F1:
            lig = "DZ";
            break;
        case 0x1F2:
            lig = "Dz";
            break;
        case 0x1F3:
            lig = "dz";
            break;
        case 0x1C7:
            lig = "LJ";
            break;
        case 0x1C8:
            lig = "Lj";
            break;
        case 0x1C9:
            lig = "lj";
            break;
        case 0x1CA:
            lig = "NJ";
            break;
        case 0x1CB:
            lig = "Nj";
            break;
        case 0x1CC:
            lig = "nj";
            break;
        case 0xFB00:
            lig = "ff";
            break;
        case 0xFB01:
            lig = "fi";
            break;
        case 0xFB02:
            lig = "fl";
            break;
        case 0xFB03:
            lig = "ffi";
            break;
        case 0xFB04:
            lig = "ffl";
            break;
        case 0xFB06:
            lig = "st";
            break;
        }
        if (lig) {
            for (const char *p = lig; *p; p++)
                if (cp_push(out, (uint8_t)*p)) goto oom;
            continue;
        }
        if (c == 0xFB05) { /* long s + t */
            if (cp_push(out, 0x17F) || cp_push(out, 't')) goto oom;
            continue;
        }
        /* fix_character_width: fullwidth/halfwidth forms -> NFKC, ideographic space -> ' ' */
        if (c == 0x3000)
            c = ' ';
        else if (c >= 0xFF01 && c <= 0xFFEF)
            for (size_t k = 0; k < NELEM(uni_width); k++)
                if (uni_width[k].from == c) {
                    c = uni_width[k].to;
                    break;
                }
        /* uncurl_quotes */
        if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B))
            c = '\'';
        else if (c >= 0x201C && c <= 0x201F)
            c = '"';
        /* remove_control_chars (the C0/C1 subset ftfy drops; \t \n \f \r stay) */
        if ((c <= 0x08) || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
            (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC))
            continue;
        if (cp_push(out, c)) goto oom;
    }
    /* NFC: compose a starter with the combining marks that follow it */
    {
        size_t k = 0;
        for (size_t i = 0; i < out->n; i++) {
            uint32_t c = out->v[i];
            if (k > 0 && is_mark(c)) {
                uint32_t m = compose(out->v[k - 1], c);
                if (m) {
                    out->v[k - 1] = m;
                    continue;
                }
            }
            out->v[k++] = c;
        }
        out->n = k;
    }
    free(t.v);
    return 0;
oom:
    free(t.v);
    return -1;
}

static int clean_cps(const char *text, cpbuf *res) {
    size_t n;
    uint32_t *v = utf8_decode(text, &n);
    if (!v) return -1;
    cpbuf a = {0}, b = {0};
    int rc = ftfy_fix(v, n, &a);
    free(v);
    if (!rc) rc = html_unescape(a.v, a.n, &b, 0);
    if (!rc) rc = html_unescape(b.v, b.n, &a, 0);
    /* whitespace collapse + strip, then lower() */
    res->n = 0;
    for (size_t i = 0; !rc && i < a.n; i++) {
        uint32_t c = a.v[i];
        if (is_space(c)) {
            if (res->n && res->v[res->n - 1] != ' ') rc = cp_push(res, ' ');
            continue;
        }
        if (c == 0x130) { /* 'İ'.lower() = 'i' + combining dot above */
            rc = cp_push(res, 'i') || cp_push(res, 0x307);
            continue;
        }
        if (c == 0x3A3) { /* final sigma: after a letter and not before one */
            int prev = res->n && is_letter(res->v[res->n - 1]);
            int next = i + 1 < a.n && is_letter(a.v[i + 1]);
            rc = cp_push(res, prev && !next ? 0x3C2 : 0x3C3);
            continue;
        }
        rc = cp_push(res, to_lower(c));
    }
    if (!rc && res->n && res->v[res->n - 1] == ' ') res->n--;
    free(a.v);
    free(b.v);
    return rc;
}

char *asam_clip_clean_text(const char *text) {
    cpbuf r = {0};
    if (clean_cps(text, &r)) {
        free(r.v);
        return NULL;
    }
    char *s = utf8_encode(r.v, r.n);
    free(r.v);
    return s;
}

/* ---- loading ------------------------------------------------------------------------------ */
static void build_byte_encoder(asam_clip_tokenizer *t) {
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t cp;
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
            cp = (uint32_t)b;
        else
            cp = 256u + (uint32_t)extra++;
        char buf[4] = {0};
        int k = utf8_put(cp, buf);
        memcpy(t->byte_enc[b], buf, (size_t)k);
        t->byte_enc[b][k] = 0;
    }
}

void asam_clip_tokenizer_free(asam_clip_tokenizer *t) {
    if (!t) return;
    strmap_free(&t->vocab);
    strmap_free(&t->merges);
    free(t);
}

int asam_clip_tokenizer_load(const char *vocab_json, const char *merges_txt,
                             asam_clip_tokenizer **out) {
    *out = NULL;
    if (!asam_file_exists(vocab_json))
        return asam_error("%s: tokenizer file not found", vocab_json);
    if (!asam_file_exists(merges_txt))
        return asam_error("%s: tokenizer file not found", merges_txt);
    asam_clip_tokenizer *t = calloc(1, sizeof *t);
    /* merges: HF reads at most 48894 of them; the vocab table is sized once it is parsed */
    if (!t || strmap_init(&t->merges, 1 << 17)) {
        asam_clip_tokenizer_free(t);
        return asam_error("%s: out of memory", vocab_json);
    }
    build_byte_encoder(t);
    char *data = NULL;
    size_t n = 0;
    if (asam_read_file(vocab_json, &data, &n)) {
        asam_clip_tokenizer_free(t);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(data, n);
    free(data);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        asam_clip_tokenizer_free(t);
        return asam_error("%s: not a JSON object of token ids", vocab_json);
    }
    size_t cap = 1024;
    while (cap < 2 * ((size_t)cJSON_GetArraySize(root) + 1)) cap *= 2;
    if (strmap_init(&t->vocab, cap)) {
        cJSON_Delete(root);
        asam_clip_tokenizer_free(t);
        return asam_error("%s: out of memory", vocab_json);
    }
    for (cJSON *e = root->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || !e->string || e->valuedouble < 0 || e->valuedouble > 1e7 ||
            strmap_put(&t->vocab, e->string, strlen(e->string), e->valueint)) {
            cJSON_Delete(root);
            asam_clip_tokenizer_free(t);
            return asam_error("%s: bad vocabulary entry", vocab_json);
        }
    }
    cJSON_Delete(root);
    if (strmap_get(&t->vocab, "<|startoftext|>", 15) != ASAM_CLIP_BOS ||
        strmap_get(&t->vocab, "<|endoftext|>", 13) != ASAM_CLIP_EOS) {
        asam_clip_tokenizer_free(t);
        return asam_error(
            "%s: not a CLIP vocabulary (<|startoftext|> must be %d, <|endoftext|> %d)", vocab_json,
            ASAM_CLIP_BOS, ASAM_CLIP_EOS);
    }
    if (asam_read_file(merges_txt, &data, &n)) {
        asam_clip_tokenizer_free(t);
        return -1;
    }
    /* HF reads merges lines [1 : 49152-256-2+1]: skip the "#version" line, at most 48894. */
    int rank = 0, line = 0;
    for (char *p = data, *nl; p < data + n && rank < 48894; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(data + n - p));
        if (!nl) nl = data + n;
        size_t L = (size_t)(nl - p);
        if (L && p[L - 1] == '\r') L--;
        if (line++ == 0 && L >= 8 && !memcmp(p, "#version", 8)) continue;
        if (!L) continue;
        char *sp = memchr(p, ' ', L);
        if (!sp || sp == p || sp == p + L - 1 || strmap_put(&t->merges, p, L, rank)) {
            free(data);
            asam_clip_tokenizer_free(t);
            return asam_error("%s: line %d: expected 'a b'", merges_txt, line);
        }
        rank++;
    }
    free(data);
    if (rank == 0) {
        asam_clip_tokenizer_free(t);
        return asam_error("%s: no merges", merges_txt);
    }
    *out = t;
    return 0;
}

/* Set when the data folder was not found: the reason, reported by load_dir. */
static char default_dir_error[1024];
#define NO_DATA_DIR "(asam data folder not found)/clip"

const char *asam_clip_default_dir(void) {
    static char buf[4200];
    const char *data = asam_data_dir();
    if (!data) {
        snprintf(default_dir_error, sizeof default_dir_error, "%s", asam_last_error());
        return NO_DATA_DIR;
    }
    snprintf(buf, sizeof buf, "%s/clip", data);
    return buf;
}

int asam_clip_tokenizer_load_dir(const char *dir, asam_clip_tokenizer **out) {
    if (!dir) dir = asam_clip_default_dir();
    if (!strcmp(dir, NO_DATA_DIR)) return asam_error("%s", default_dir_error);
    char v[4096], m[4096];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    return asam_clip_tokenizer_load(v, m, out);
}

/* ---- BPE ---------------------------------------------------------------------------------- */
typedef struct {
    int64_t *ids;
    size_t n, cap;
    char **pieces; /* NULL when not wanted */
} idbuf;

static int id_push(idbuf *b, int64_t id, const char *piece, size_t plen) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 32;
        int64_t *ni = realloc(b->ids, nc * sizeof *ni);
        if (!ni) return -1;
        b->ids = ni;
        if (b->pieces) {
            char **np = realloc(b->pieces, nc * sizeof *np);
            if (!np) return -1;
            b->pieces = np;
        }
        b->cap = nc;
    }
    if (b->pieces) {
        char *s = malloc(plen + 1);
        if (!s) return -1;
        memcpy(s, piece, plen);
        s[plen] = 0;
        b->pieces[b->n] = s;
    }
    b->ids[b->n++] = id;
    return 0;
}

/* BPE of one pre-token (its byte-level unicode string, word ends with "</w>"). Symbols are
 * kept as (offset, length) spans of one buffer; merging joins neighbours in place. */
static int bpe_word(const asam_clip_tokenizer *t, const char *tok, size_t tok_len, idbuf *out) {
    /* Build the byte-level string + "</w>" and split into symbols (one per byte). */
    size_t cap = tok_len * 2 + 8;
    char *s = malloc(cap);
    size_t *off = malloc((tok_len + 1) * sizeof *off), *len = malloc((tok_len + 1) * sizeof *len);
    char *key = malloc(cap + 2);
    if (!s || !off || !len || !key) {
        free(s), free(off), free(len), free(key);
        return -1;
    }
    size_t k = 0, ns = 0;
    for (size_t i = 0; i < tok_len; i++) {
        const char *e = t->byte_enc[(uint8_t)tok[i]];
        size_t L = strlen(e);
        off[ns] = k;
        len[ns++] = L;
        memcpy(s + k, e, L);
        k += L;
    }
    memcpy(s + k, "</w>", 4);
    len[ns - 1] += 4; /* "</w>" belongs to the last symbol */
    /* Symbols are contiguous in s in order, so a merge is just a length change + removal. */
    for (;;) {
        int best = -1;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < ns; i++) {
            memcpy(key, s + off[i], len[i]);
            key[len[i]] = ' ';
            memcpy(key + len[i] + 1, s + off[i + 1], len[i + 1]);
            int r = strmap_get(&t->merges, key, len[i] + 1 + len[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) best = r, bi = i;
        }
        if (best < 0) break;
        /* merge every occurrence of the pair (a, b), scanning left to right */
        size_t la = len[bi], lb = len[bi + 1];
        char *a = s + off[bi], *b = s + off[bi + 1];
        char pa[64], pb[64];
        char *A = la < sizeof pa ? pa : malloc(la), *B = lb < sizeof pb ? pb : malloc(lb);
        if (!A || !B) {
            free(s), free(off), free(len), free(key);
            return -1;
        }
        memcpy(A, a, la);
        memcpy(B, b, lb);
        size_t w = 0;
        for (size_t i = 0; i < ns;) {
            if (i + 1 < ns && len[i] == la && len[i + 1] == lb && !memcmp(s + off[i], A, la) &&
                !memcmp(s + off[i + 1], B, lb)) {
                off[w] = off[i];
                len[w++] = la + lb;
                i += 2;
            } else {
                off[w] = off[i];
                len[w++] = len[i];
                i++;
            }
        }
        ns = w;
        if (A != pa) free(A);
        if (B != pb) free(B);
        if (ns == 1) break;
    }
    int rc = 0;
    for (size_t i = 0; i < ns && !rc; i++) {
        int id = strmap_get(&t->vocab, s + off[i], len[i]);
        if (id < 0) {
            asam_error("CLIP tokenizer: piece '%.*s' missing from the vocabulary", (int)len[i],
                       s + off[i]);
            rc = -1;
        } else {
            rc = id_push(out, id, s + off[i], len[i]);
        }
    }
    free(s), free(off), free(len), free(key);
    return rc;
}

void asam_clip_free_pieces(char **pieces, size_t n) {
    if (!pieces) return;
    for (size_t i = 0; i < n; i++) free(pieces[i]);
    free(pieces);
}

static int match_ascii(const uint32_t *v, size_t n, size_t i, const char *lit) {
    size_t L = strlen(lit);
    if (i + L > n) return 0;
    for (size_t k = 0; k < L; k++)
        if (v[i + k] != (uint8_t)lit[k]) return 0;
    return (int)L;
}

int asam_clip_encode(const asam_clip_tokenizer *t, const char *text, int64_t **ids, size_t *n,
                     char ***pieces) {
    *ids = NULL;
    *n = 0;
    if (pieces) *pieces = NULL;
    cpbuf c = {0};
    if (clean_cps(text, &c)) {
        free(c.v);
        return asam_error("CLIP tokenizer: out of memory");
    }
    idbuf out = {0};
    if (pieces) out.pieces = malloc(sizeof(char *));
    char *tok = malloc(4 * c.n + 8);
    int rc = tok && (!pieces || out.pieces) ? 0 : -1;
    static const char *const specials[] = {"<|startoftext|>", "<|endoftext|>"};
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t i = 0; i < c.n && !rc;) {
        uint32_t ch = c.v[i];
        if (is_space(ch)) {
            i++;
            continue;
        }
        size_t L = 0;
        int special = -1;
        for (int s = 0; s < 2 && !L; s++)
            if ((L = (size_t)match_ascii(c.v, c.n, i, specials[s]))) special = s;
        for (int s = 0; s < 7 && !L; s++) L = (size_t)match_ascii(c.v, c.n, i, contractions[s]);
        if (!L && is_letter(ch))
            for (L = 1; i + L < c.n && is_letter(c.v[i + L]); L++) {
            }
        if (!L && is_number(ch)) L = 1;
        if (!L)
            for (L = 1; i + L < c.n && !is_space(c.v[i + L]) && !is_letter(c.v[i + L]) &&
                        !is_number(c.v[i + L]);
                 L++) {
            }
        if (special >= 0) {
            const char *sp = specials[special];
            rc = id_push(&out, special ? ASAM_CLIP_EOS : ASAM_CLIP_BOS, sp, strlen(sp));
        } else {
            size_t k = 0;
            for (size_t j = 0; j < L; j++) k += (size_t)utf8_put(c.v[i + j], tok + k);
            rc = bpe_word(t, tok, k, &out);
        }
        i += L;
    }
    free(tok);
    free(c.v);
    if (rc) {
        free(out.ids);
        if (out.pieces) asam_clip_free_pieces(out.pieces, out.n);
        return rc;
    }
    *ids = out.ids;
    *n = out.n;
    if (pieces)
        *pieces = out.pieces;
    else
        free(out.pieces);
    return 0;
}

int asam_clip_tokenize(const asam_clip_tokenizer *t, const char *text,
                       int64_t ids[ASAM_CLIP_CONTEXT]) {
    int64_t *raw;
    size_t n;
    if (asam_clip_encode(t, text, &raw, &n, NULL)) return -1;
    ids[0] = ASAM_CLIP_BOS;
    size_t keep = n < ASAM_CLIP_CONTEXT - 2 ? n : ASAM_CLIP_CONTEXT - 2;
    for (size_t i = 0; i < keep; i++) ids[1 + i] = raw[i];
    for (size_t i = 1 + keep; i < ASAM_CLIP_CONTEXT; i++) ids[i] = ASAM_CLIP_EOS;
    free(raw);
    return (int)n;
}
