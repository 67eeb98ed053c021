/* Restricted unpickler (see pickle.h). Every read is bounds-checked against the buffer, every
 * pop against the current MARK fence, every memo index against the memo; nothing recurses, so
 * malformed input yields an error, never a crash. Memory is O(input size): each opcode creates
 * at most one object and objects live until pk_free. */
#include "io/pickle.h"
#include "asam/error.h"

#include <stdlib.h>
#include <string.h>

#define PK_MAX_NAME 4096 /* GLOBAL module / name line */

struct pk_ctx {
    pk_obj **objs; /* every allocated object, freed together */
    size_t nobj, capobj;
    pk_obj **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    pk_obj **memo;
    size_t nmemo, memocap;
    const uint8_t *p;
    size_t n, pos;
    size_t op_pos; /* offset of the current opcode, for messages */
    uint8_t op;
};

static int fail(pk_ctx *c, const char *what) {
    return asam_error("malformed pickle: %s (opcode 0x%02x at offset %zu)", what, c->op, c->op_pos);
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem) return -1;
        nc *= 2;
    }
    void *na = realloc(*arr, nc * elem);
    if (!na) return -1;
    *arr = na;
    *cap = nc;
    return 0;
}

static pk_obj *new_obj(pk_ctx *c, pk_type t) {
    if (grow((void **)&c->objs, &c->capobj, c->nobj + 1, sizeof *c->objs)) return NULL;
    pk_obj *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->type = t;
    c->objs[c->nobj++] = o;
    return o;
}

static int add_item(pk_obj *o, pk_obj *it) {
    if (grow((void **)&o->items, &o->cap, o->n + 1, sizeof *o->items)) return -1;
    o->items[o->n++] = it;
    return 0;
}

static size_t fence(const pk_ctx *c) {
    return c->nmarks ? c->marks[c->nmarks - 1] : 0;
}

static int push(pk_ctx *c, pk_obj *o) {
    if (!o) return asam_error("out of memory");
    if (grow((void **)&c->stack, &c->scap, c->sp + 1, sizeof *c->stack))
        return asam_error("out of memory");
    c->stack[c->sp++] = o;
    return 0;
}

static pk_obj *pop(pk_ctx *c) {
    if (c->sp <= fence(c)) return fail(c, "stack underflow"), NULL;
    return c->stack[--c->sp];
}

static pk_obj *top(pk_ctx *c) {
    if (c->sp <= fence(c)) return fail(c, "stack underflow"), NULL;
    return c->stack[c->sp - 1];
}

/* Pops the topmost MARK; items are stack[*start .. sp). The caller sets sp = *start. */
static int pop_mark(pk_ctx *c, size_t *start) {
    if (!c->nmarks) return fail(c, "no MARK on the stack");
    *start = c->marks[--c->nmarks];
    return 0;
}

static int need(pk_ctx *c, uint64_t k) {
    if (k > c->n - c->pos) return fail(c, "truncated argument");
    return 0;
}

static uint64_t rd_le(pk_ctx *c, int k) {
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--) v = v << 8 | c->p[c->pos + i];
    c->pos += k;
    return v;
}

static pk_obj *new_str(pk_ctx *c, pk_type t, const uint8_t *s, size_t len) {
    pk_obj *o = new_obj(c, t);
    if (!o) return NULL;
    o->s = malloc(len + 1);
    if (!o->s) return NULL;
    memcpy(o->s, s, len);
    o->s[len] = 0;
    o->len = len;
    return o;
}

static pk_obj *new_int(pk_ctx *c, int64_t v) {
    pk_obj *o = new_obj(c, PK_INT);
    if (o) o->i = v;
    return o;
}

/* A sequence object built from stack[start .. sp). */
static pk_obj *from_stack(pk_ctx *c, pk_type t, size_t start) {
    pk_obj *o = new_obj(c, t);
    if (!o) return NULL;
    for (size_t i = start; i < c->sp; i++)
        if (add_item(o, c->stack[i])) return NULL;
    c->sp = start;
    return o;
}

static int is_global(const pk_obj *o, const char *name) {
    return o && o->type == PK_GLOBAL && !strcmp(o->s, name);
}

static int storage_dtype(const char *name, asam_dtype *dt) {
    static const struct {
        const char *name;
        asam_dtype dt;
    } tab[] = {{"torch.FloatStorage", ASAM_DT_F32},     {"torch.HalfStorage", ASAM_DT_F16},
               {"torch.BFloat16Storage", ASAM_DT_BF16}, {"torch.DoubleStorage", ASAM_DT_F64},
               {"torch.LongStorage", ASAM_DT_I64},      {"torch.IntStorage", ASAM_DT_I32},
               {"torch.ShortStorage", ASAM_DT_I16},     {"torch.CharStorage", ASAM_DT_I8},
               {"torch.ByteStorage", ASAM_DT_U8},       {"torch.BoolStorage", ASAM_DT_BOOL}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(name, tab[i].name)) {
            *dt = tab[i].dt;
            return 0;
        }
    return -1;
}

/* persistent_load(('storage', torch.XStorage, key, device, numel)) */
static pk_obj *persistent_load(pk_ctx *c, pk_obj *pid) {
    if (pid->type != PK_TUPLE || pid->n < 5 || pid->items[0]->type != PK_STR ||
        strcmp(pid->items[0]->s, "storage"))
        return fail(c, "unsupported persistent id (expected ('storage', type, key, device, "
                       "numel))"),
               NULL;
    pk_obj *ty = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    asam_dtype dt;
    if (ty->type != PK_GLOBAL) return fail(c, "storage type is not a class"), NULL;
    if (storage_dtype(ty->s, &dt)) {
        asam_error("unsupported storage type %s (opcode 0x%02x at offset %zu)", ty->s, c->op,
                   c->op_pos);
        return NULL;
    }
    if (key->type != PK_STR || numel->type != PK_INT || numel->i < 0)
        return fail(c, "bad storage key or size"), NULL;
    pk_obj *o = new_obj(c, PK_STORAGE);
    if (!o) return asam_error("out of memory"), NULL;
    o->s = key->s; /* owned by key, which lives as long as o */
    o->len = key->len;
    o->dtype = dt;
    o->numel = numel->i;
    return o;
}

/* 0, -1 (not a tuple of at most 8 non-negative ints) or -2 (an entry beyond 64 bits) */
static int int_tuple(const pk_obj *t, int64_t *out, int *n) {
    if (t->type != PK_TUPLE || t->n > ASAM_CKPT_MAX_DIMS) return -1;
    for (size_t i = 0; i < t->n; i++) {
        if (t->items[i]->type == PK_OPAQUE && t->items[i]->i == 1) return -2;
        if (t->items[i]->type != PK_INT || t->items[i]->i < 0) return -1;
        out[i] = t->items[i]->i;
    }
    *n = (int)t->n;
    return 0;
}

static pk_obj *opaque(pk_ctx *c, const pk_obj *callable) {
    pk_obj *o = new_obj(c, PK_OPAQUE);
    if (!o) return asam_error("out of memory"), NULL;
    if (callable && (callable->type == PK_GLOBAL || callable->type == PK_OPAQUE) && callable->s) {
        o->s = strdup(callable->s);
        if (!o->s) return asam_error("out of memory"), NULL;
        o->len = strlen(o->s);
    }
    return o;
}

/* The REDUCE whitelist. Anything not recognised becomes an opaque object. */
static pk_obj *call(pk_ctx *c, pk_obj *fn, pk_obj *args, int depth) {
    if (args->type != PK_TUPLE) return fail(c, "REDUCE arguments are not a tuple"), NULL;
    if (is_global(fn, "torch._utils._rebuild_tensor_v2") ||
        is_global(fn, "torch._utils._rebuild_tensor")) {
        if (args->n < 4 || args->items[0]->type != PK_STORAGE || args->items[1]->type != PK_INT ||
            args->items[1]->i < 0)
            return fail(c, "bad _rebuild_tensor arguments"), NULL;
        pk_obj *t = new_obj(c, PK_TENSOR);
        if (!t) return asam_error("out of memory"), NULL;
        int nd = 0, ns = 0;
        int r1 = int_tuple(args->items[2], t->shape, &nd);
        int r2 = r1 ? 0 : int_tuple(args->items[3], t->stride, &ns);
        if (r1 == -2 || r2 == -2)
            return fail(c, "tensor size/stride entry overflows 64 bits"), NULL;
        if (r1 || r2 || nd != ns)
            return fail(c, "bad tensor size/stride (non-negative int tuples of equal length, at "
                           "most 8 dims)"),
                   NULL;
        t->storage = args->items[0];
        t->dtype = t->storage->dtype;
        t->offset = args->items[1]->i;
        t->ndim = nd;
        return t;
    }
    if (is_global(fn, "torch._utils._rebuild_parameter") ||
        is_global(fn, "torch._utils._rebuild_parameter_with_state")) {
        if (args->n >= 1 && args->items[0]->type == PK_TENSOR) return args->items[0];
        return opaque(c, fn);
    }
    if (is_global(fn, "torch._tensor._rebuild_from_type_v2") && depth == 0) {
        /* (func, type, args, state): a tensor subclass; rebuild the plain tensor */
        if (args->n >= 3 && args->items[2]->type == PK_TUPLE)
            return call(c, args->items[0], args->items[2], depth + 1);
        return opaque(c, fn);
    }
    if (is_global(fn, "collections.OrderedDict") || is_global(fn, "builtins.dict")) {
        pk_obj *d = new_obj(c, PK_DICT);
        if (!d) return asam_error("out of memory"), NULL;
        /* OrderedDict([(k, v), ...]) */
        if (args->n == 1 && (args->items[0]->type == PK_LIST || args->items[0]->type == PK_TUPLE)) {
            pk_obj *l = args->items[0];
            for (size_t i = 0; i < l->n; i++) {
                pk_obj *kv = l->items[i];
                if (kv->type != PK_TUPLE || kv->n != 2) continue;
                if (add_item(d, kv->items[0]) || add_item(d, kv->items[1]))
                    return asam_error("out of memory"), NULL;
            }
        }
        return d;
    }
    return opaque(c, fn);
}

static int dict_add(pk_ctx *c, pk_obj *d, pk_obj *k, pk_obj *v) {
    if (d->type != PK_DICT && d->type != PK_OPAQUE) return fail(c, "SETITEM on a non-dict");
    if (add_item(d, k) || add_item(d, v)) return asam_error("out of memory");
    return 0;
}

static int list_add(pk_ctx *c, pk_obj *l, pk_obj *v, pk_type want) {
    if (l->type != want && l->type != PK_OPAQUE) return fail(c, "APPEND/ADDITEMS on a wrong type");
    if (add_item(l, v)) return asam_error("out of memory");
    return 0;
}

static int memo_put(pk_ctx *c, uint64_t idx) {
    pk_obj *o = top(c);
    if (!o) return -1;
    /* Picklers number memo slots 0, 1, 2, ...; each PUT takes >= 2 bytes, so a valid index is
     * below the input size. This bounds the memo's memory. */
    if (idx >= c->n || idx >= (1u << 30)) return fail(c, "memo index out of range");
    if (idx >= c->nmemo) {
        if (grow((void **)&c->memo, &c->memocap, idx + 1, sizeof *c->memo))
            return asam_error("out of memory");
        memset(c->memo + c->nmemo, 0, (idx + 1 - c->nmemo) * sizeof *c->memo);
        c->nmemo = idx + 1;
    }
    c->memo[idx] = o;
    return 0;
}

static int memo_get(pk_ctx *c, uint64_t idx) {
    if (idx >= c->nmemo || !c->memo[idx]) return fail(c, "memo index out of range");
    return push(c, c->memo[idx]);
}

/* Reads "text\n" (GLOBAL arguments). */
static int read_line(pk_ctx *c, const uint8_t **s, size_t *len) {
    size_t rem = c->n - c->pos, lim = rem < PK_MAX_NAME ? rem : PK_MAX_NAME;
    const uint8_t *nl = memchr(c->p + c->pos, '\n', lim);
    if (!nl) return fail(c, "unterminated GLOBAL name");
    *s = c->p + c->pos;
    *len = (size_t)(nl - *s);
    c->pos += *len + 1;
    return 0;
}

static pk_obj *make_global(pk_ctx *c, const uint8_t *m, size_t ml, const uint8_t *n, size_t nl) {
    pk_obj *o = new_obj(c, PK_GLOBAL);
    if (!o || !(o->s = malloc(ml + nl + 2))) return NULL;
    memcpy(o->s, m, ml);
    o->s[ml] = '.';
    memcpy(o->s + ml + 1, n, nl);
    o->s[ml + nl + 1] = 0;
    o->len = ml + nl + 1;
    return o;
}

static pk_obj *read_str(pk_ctx *c, int lenbytes, pk_type t, int signed32) {
    if (need(c, lenbytes)) return NULL;
    uint64_t len = rd_le(c, lenbytes);
    if (signed32 && len > 0x7fffffffu) return fail(c, "negative length"), NULL;
    if (need(c, len)) return NULL;
    pk_obj *o = new_str(c, t, c->p + c->pos, (size_t)len);
    c->pos += (size_t)len;
    if (!o) asam_error("out of memory");
    return o;
}

/* LONG1/LONG4: little-endian two's complement of len bytes. */
static pk_obj *read_long(pk_ctx *c, uint64_t len) {
    if (need(c, len)) return NULL;
    const uint8_t *b = c->p + c->pos;
    c->pos += (size_t)len;
    if (len > 8) { /* big integer: no tensor field can hold it; marked for the shape check */
        pk_obj *o = opaque(c, NULL);
        if (o) o->i = 1;
        return o;
    }
    uint64_t v = 0;
    for (int i = (int)len - 1; i >= 0; i--) v = v << 8 | b[i];
    if (len > 0 && len < 8 && (b[len - 1] & 0x80)) v |= ~0ull << (8 * len); /* sign-extend */
    return new_int(c, (int64_t)v);
}

/* One opcode of the unpickler VM. Long on purpose: one case per supported opcode (in
 * pickletools' order), all sharing the stack/memo discipline stated once above. */
static int step(pk_ctx *c, pk_obj **result) {
    c->op_pos = c->pos;
    c->op = c->p[c->pos++];
    pk_obj *a, *b, *o;
    size_t start = 0;
    const uint8_t *s1 = NULL, *s2 = NULL;
    size_t l1 = 0, l2 = 0;
    switch (c->op) {
    case 0x80: /* PROTO */
        if (need(c, 1)) return -1;
        if (c->p[c->pos++] > 5) return fail(c, "unsupported protocol");
        return 0;
    case 0x95: /* FRAME: a length hint only */
        if (need(c, 8)) return -1;
        c->pos += 8;
        return 0;
    case '.': /* STOP */
        if (!(o = pop(c))) return -1;
        *result = o;
        return 0;
    case '(': /* MARK */
        if (grow((void **)&c->marks, &c->mcap, c->nmarks + 1, sizeof *c->marks))
            return asam_error("out of memory");
        c->marks[c->nmarks++] = c->sp;
        return 0;
    case '0': /* POP (a MARK on top counts) */
        if (c->sp > fence(c)) {
            c->sp--;
            return 0;
        }
        if (c->nmarks) {
            c->nmarks--;
            return 0;
        }
        return fail(c, "stack underflow");
    case '1': /* POP_MARK */
        if (pop_mark(c, &start)) return -1;
        c->sp = start;
        return 0;
    case '2': /* DUP */
        if (!(o = top(c))) return -1;
        return push(c, o);
    case 'c': /* GLOBAL module\nname\n */
        if (read_line(c, &s1, &l1) || read_line(c, &s2, &l2)) return -1;
        return push(c, make_global(c, s1, l1, s2, l2));
    case 0x93: /* STACK_GLOBAL */
        if (!(b = pop(c)) || !(a = pop(c))) return -1;
        if (a->type != PK_STR || b->type != PK_STR)
            return fail(c, "STACK_GLOBAL needs two strings");
        return push(c,
                    make_global(c, (const uint8_t *)a->s, a->len, (const uint8_t *)b->s, b->len));
    case 'q': /* BINPUT */
        if (need(c, 1)) return -1;
        return memo_put(c, rd_le(c, 1));
    case 'r': /* LONG_BINPUT */
        if (need(c, 4)) return -1;
        return memo_put(c, rd_le(c, 4));
    case 0x94: /* MEMOIZE */
        return memo_put(c, c->nmemo);
    case 'h': /* BINGET */
        if (need(c, 1)) return -1;
        return memo_get(c, rd_le(c, 1));
    case 'j': /* LONG_BINGET */
        if (need(c, 4)) return -1;
        return memo_get(c, rd_le(c, 4));
    case ')': /* EMPTY_TUPLE */
        return push(c, new_obj(c, PK_TUPLE));
    case 't': /* TUPLE */
        if (pop_mark(c, &start)) return -1;
        return push(c, from_stack(c, PK_TUPLE, start));
    case 0x85:   /* TUPLE1 */
    case 0x86:   /* TUPLE2 */
    case 0x87: { /* TUPLE3 */
        size_t k = (size_t)(c->op - 0x84);
        if (c->sp < fence(c) + k) return fail(c, "stack underflow");
        return push(c, from_stack(c, PK_TUPLE, c->sp - k));
    }
    case ']': /* EMPTY_LIST */
        return push(c, new_obj(c, PK_LIST));
    case 'l': /* LIST */
        if (pop_mark(c, &start)) return -1;
        return push(c, from_stack(c, PK_LIST, start));
    case '}': /* EMPTY_DICT */
        return push(c, new_obj(c, PK_DICT));
    case 'd': /* DICT */
        if (pop_mark(c, &start)) return -1;
        if ((c->sp - start) % 2) return fail(c, "odd number of DICT items");
        return push(c, from_stack(c, PK_DICT, start));
    case 0x8f: /* EMPTY_SET */
        return push(c, new_obj(c, PK_SET));
    case 0x91: /* FROZENSET */
        if (pop_mark(c, &start)) return -1;
        return push(c, from_stack(c, PK_SET, start));
    case 'a': /* APPEND */
        if (!(b = pop(c)) || !(a = top(c))) return -1;
        return list_add(c, a, b, PK_LIST);
    case 'e':  /* APPENDS */
    case 0x90: /* ADDITEMS */
        if (pop_mark(c, &start)) return -1;
        if (start <= fence(c)) return fail(c, "stack underflow");
        a = c->stack[start - 1];
        for (size_t i = start; i < c->sp; i++)
            if (list_add(c, a, c->stack[i], c->op == 'e' ? PK_LIST : PK_SET)) return -1;
        c->sp = start;
        return 0;
    case 's': /* SETITEM */
        if (!(b = pop(c)) || !(a = pop(c)) || !(o = top(c))) return -1;
        return dict_add(c, o, a, b);
    case 'u': /* SETITEMS */
        if (pop_mark(c, &start)) return -1;
        if (start <= fence(c)) return fail(c, "stack underflow");
        if ((c->sp - start) % 2) return fail(c, "odd number of SETITEMS items");
        o = c->stack[start - 1];
        for (size_t i = start; i < c->sp; i += 2)
            if (dict_add(c, o, c->stack[i], c->stack[i + 1])) return -1;
        c->sp = start;
        return 0;
    case 'R': /* REDUCE: never calls anything, see call() */
        if (!(b = pop(c)) || !(a = pop(c))) return -1;
        if (!(o = call(c, a, b, 0))) return -1;
        return push(c, o);
    case 0x81: /* NEWOBJ cls.__new__(cls, *args) */
        if (!(b = pop(c)) || !(a = pop(c))) return -1;
        if (is_global(a, "collections.OrderedDict")) return push(c, new_obj(c, PK_DICT));
        return push(c, opaque(c, a));
    case 0x92: /* NEWOBJ_EX */
        if (!pop(c) || !pop(c) || !(a = pop(c))) return -1;
        return push(c, opaque(c, a));
    case 'b': /* BUILD: object state (e.g. a state dict's _metadata) is ignored */
        if (!pop(c) || !top(c)) return -1;
        return 0;
    case 'Q': /* BINPERSID */
        if (!(a = pop(c))) return -1;
        if (!(o = persistent_load(c, a))) return -1;
        return push(c, o);
    case 'N': /* NONE */
        return push(c, new_obj(c, PK_NONE));
    case 0x88: /* NEWTRUE */
    case 0x89: /* NEWFALSE */
        if (!(o = new_obj(c, PK_BOOL))) return asam_error("out of memory");
        o->i = c->op == 0x88;
        return push(c, o);
    case 'J': /* BININT */
        if (need(c, 4)) return -1;
        return push(c, new_int(c, (int32_t)(uint32_t)rd_le(c, 4)));
    case 'K': /* BININT1 */
        if (need(c, 1)) return -1;
        return push(c, new_int(c, (int64_t)rd_le(c, 1)));
    case 'M': /* BININT2 */
        if (need(c, 2)) return -1;
        return push(c, new_int(c, (int64_t)rd_le(c, 2)));
    case 0x8a: /* LONG1 */
        if (need(c, 1)) return -1;
        if (!(o = read_long(c, rd_le(c, 1)))) return -1;
        return push(c, o);
    case 0x8b: /* LONG4 */
        if (need(c, 4)) return -1;
        l1 = (size_t)rd_le(c, 4);
        if (l1 > 0x7fffffffu) return fail(c, "negative length");
        if (!(o = read_long(c, l1))) return -1;
        return push(c, o);
    case 'G': { /* BINFLOAT, big-endian */
        if (need(c, 8)) return -1;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = u << 8 | c->p[c->pos + i];
        c->pos += 8;
        if (!(o = new_obj(c, PK_FLOAT))) return asam_error("out of memory");
        memcpy(&o->f, &u, 8);
        return push(c, o);
    }
    case 'X': /* BINUNICODE */
        if (!(o = read_str(c, 4, PK_STR, 0))) return -1;
        return push(c, o);
    case 0x8c: /* SHORT_BINUNICODE */
        if (!(o = read_str(c, 1, PK_STR, 0))) return -1;
        return push(c, o);
    case 0x8d: /* BINUNICODE8 */
        if (!(o = read_str(c, 8, PK_STR, 0))) return -1;
        return push(c, o);
    case 'T': /* BINSTRING (python 2 str: treated as text) */
        if (!(o = read_str(c, 4, PK_STR, 1))) return -1;
        return push(c, o);
    case 'U': /* SHORT_BINSTRING */
        if (!(o = read_str(c, 1, PK_STR, 0))) return -1;
        return push(c, o);
    case 'B': /* BINBYTES */
        if (!(o = read_str(c, 4, PK_BYTES, 0))) return -1;
        return push(c, o);
    case 'C': /* SHORT_BINBYTES */
        if (!(o = read_str(c, 1, PK_BYTES, 0))) return -1;
        return push(c, o);
    case 0x8e: /* BINBYTES8 */
    case 0x96: /* BYTEARRAY8 */
        if (!(o = read_str(c, 8, PK_BYTES, 0))) return -1;
        return push(c, o);
    default:
        return fail(c, "unsupported opcode");
    }
}

void pk_free(pk_ctx *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nobj; i++) {
        pk_obj *o = c->objs[i];
        if (o->type != PK_STORAGE) free(o->s); /* a storage borrows its key's string */
        free(o->items);
        free(o);
    }
    free(c->objs);
    free(c->stack);
    free(c->marks);
    free(c->memo);
    free(c);
}

int pk_load(const uint8_t *data, size_t n, pk_ctx **ctx, pk_obj **root) {
    *ctx = NULL;
    *root = NULL;
    pk_ctx *c = calloc(1, sizeof *c);
    if (!c) return asam_error("out of memory");
    c->p = data;
    c->n = n;
    pk_obj *res = NULL;
    while (!res) {
        if (c->pos >= c->n) {
            asam_error("truncated pickle (no STOP opcode) at offset %zu", c->pos);
            pk_free(c);
            return -1;
        }
        if (step(c, &res)) {
            pk_free(c);
            return -1;
        }
    }
    /* The memo/stack are no longer needed; the objects stay alive in c->objs. */
    *ctx = c;
    *root = res;
    return 0;
}
