/* The option table reader and --help printer shared by every command (see options.h). */
#include "cli/options.h"
#include "asam/asam.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int parse_u64(const char *s, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Does `name` ("--x" or "-v|--verbose") match the argument a? */
static int name_matches(const char *name, const char *a) {
    size_t la = strlen(a);
    for (const char *p = name; *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == la && !strncmp(p, a, n)) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

static int takes_value(cli_opt_kind k) {
    return k != OPT_FLAG && k != OPT_UNSET && k != OPT_COUNT;
}

static int usage_error(const cli_spec *s, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "asam %s: ", s->cmd);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see asam %s --help)\n", s->cmd);
    return CLI_USAGE;
}

static int choice_index(const char *choices, const char *v) {
    int idx = 0;
    size_t lv = strlen(v);
    for (const char *p = choices; *p; idx++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == lv && !strncmp(p, v, n)) return idx;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

static int bad_range(const cli_spec *s, const cli_opt *o, const char *v) {
    fprintf(stderr, "asam %s: %s: expected %s in [%g, %g], got '%s'\n", s->cmd, o->name,
            o->kind == OPT_INT ? "a whole number" : "a number", o->lo, o->hi, v);
    return CLI_USAGE;
}

/* Store one value into its destination; CLI_OK or CLI_USAGE (after one line). */
static int store(const cli_spec *s, const cli_opt *o, const char *v) {
    double x;
    switch (o->kind) {
    case OPT_STR:
        *(const char **)o->dst = v;
        return CLI_OK;
    case OPT_INT:
        if (asam_parse_number(v, &x) || x != floor(x) || x < o->lo || x > o->hi)
            return bad_range(s, o, v);
        if (o->multiple_of > 1 && (long long)x % o->multiple_of) {
            fprintf(stderr, "asam %s: %s must be a multiple of %d, got '%s'\n", s->cmd, o->name,
                    o->multiple_of, v);
            return CLI_USAGE;
        }
        *(int *)o->dst = (int)x;
        return CLI_OK;
    case OPT_U64:
        if (parse_u64(v, (uint64_t *)o->dst)) {
            fprintf(stderr, "asam %s: %s: expected a whole number >= 0, got '%s'\n", s->cmd,
                    o->name, v);
            return CLI_USAGE;
        }
        return CLI_OK;
    case OPT_DOUBLE:
    case OPT_FLOAT:
        if (asam_parse_number(v, &x) || x < o->lo || x > o->hi) return bad_range(s, o, v);
        if (o->kind == OPT_DOUBLE)
            *(double *)o->dst = x;
        else
            *(float *)o->dst = (float)x;
        return CLI_OK;
    case OPT_CHOICE: {
        int k = choice_index(o->choices, v);
        if (k < 0) {
            fprintf(stderr, "asam %s: %s: expected one of %s, got '%s'\n", s->cmd, o->name,
                    o->choices, v);
            return CLI_USAGE;
        }
        *(int *)o->dst = k;
        return CLI_OK;
    }
    case OPT_LIST: {
        cli_list *l = o->dst;
        if (l->n >= l->max) {
            fprintf(stderr, "asam %s: %s: too many (%d at most)\n", s->cmd, o->name, l->max);
            return CLI_USAGE;
        }
        l->v[l->n++] = v;
        return CLI_OK;
    }
    case OPT_CUSTOM: {
        char err[256] = "";
        if (o->parse(v, o->dst, err, sizeof err)) {
            fprintf(stderr, "asam %s: %s '%s': %s\n", s->cmd, o->name, v, err);
            return CLI_USAGE;
        }
        return CLI_OK;
    }
    default:
        return CLI_USAGE;
    }
}

static const cli_opt *find_opt(const cli_spec *s, const char *a) {
    for (int k = 0; k < s->n_opts; k++)
        if (name_matches(s->opts[k].name, a)) return &s->opts[k];
    return NULL;
}

int cli_parse(const cli_spec *s, int argc, char **argv) {
    unsigned char seen[128] = {0};
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            cli_help(s, stdout);
            return CLI_HELP;
        }
        if (!only_positional && !strcmp(a, "--")) {
            only_positional = 1;
            continue;
        }
        if (only_positional || a[0] != '-' || !a[1]) {
            if (!s->positional) return usage_error(s, "unexpected argument '%s'%s", a, "");
            if (s->positional->n >= s->positional->max)
                return usage_error(s, "too many arguments at '%s'%s", a, "");
            s->positional->v[s->positional->n++] = a;
            continue;
        }
        const cli_opt *o = find_opt(s, a);
        if (!o) return usage_error(s, "unknown option '%s'%s", a, "");
        if ((size_t)(o - s->opts) < sizeof seen) seen[o - s->opts] = 1;
        if (o->kind == OPT_FLAG)
            *(int *)o->dst = 1;
        else if (o->kind == OPT_UNSET)
            *(int *)o->dst = 0;
        else if (o->kind == OPT_COUNT)
            ++*(int *)o->dst;
        else {
            if (i + 1 >= argc) return usage_error(s, "%s needs a value%s", a, "");
            int rc = store(s, o, argv[++i]);
            if (rc) return rc;
        }
    }
    for (int k = 0; k < s->n_opts; k++) {
        const cli_opt *o = &s->opts[k];
        int given = k < (int)sizeof seen ? seen[k] : 1;
        if (o->required && !given && !(o->kind == OPT_LIST && ((cli_list *)o->dst)->n))
            return usage_error(s, "%s is required%s", o->name, "");
    }
    return CLI_OK;
}

/* "(default X)" from the destination's value before parsing. */
static void default_text(const cli_opt *o, char *buf, size_t n) {
    buf[0] = 0;
    if (o->no_default || !o->dst || o->required) return;
    switch (o->kind) {
    case OPT_STR: {
        const char *v = *(const char **)o->dst;
        if (v) snprintf(buf, n, " (default %s)", *v ? v : "\"\"");
        break;
    }
    case OPT_INT:
        snprintf(buf, n, " (default %d)", *(int *)o->dst);
        break;
    case OPT_U64:
        snprintf(buf, n, " (default %llu)", (unsigned long long)*(uint64_t *)o->dst);
        break;
    case OPT_DOUBLE:
        snprintf(buf, n, " (default %g)", *(double *)o->dst);
        break;
    case OPT_FLOAT:
        snprintf(buf, n, " (default %g)", (double)*(float *)o->dst);
        break;
    case OPT_CHOICE: {
        int k = *(int *)o->dst, idx = 0;
        for (const char *p = o->choices; *p; idx++) {
            const char *bar = strchr(p, '|');
            size_t len = bar ? (size_t)(bar - p) : strlen(p);
            if (idx == k) {
                snprintf(buf, n, " (default %.*s)", (int)len, p);
                break;
            }
            if (!bar) break;
            p = bar + 1;
        }
        break;
    }
    default:
        break;
    }
}

void cli_help(const cli_spec *s, FILE *f) {
    fprintf(f, "usage: asam %s %s\n", s->cmd, s->synopsis ? s->synopsis : "[options]");
    if (s->about) fprintf(f, "\n%s", s->about);
    if (s->n_opts) fprintf(f, "\noptions:\n");
    for (int k = 0; k < s->n_opts; k++) {
        const cli_opt *o = &s->opts[k];
        char head[96], def[96];
        const char *meta = o->meta ? o->meta : (o->kind == OPT_CHOICE ? o->choices : "X");
        if (takes_value(o->kind))
            snprintf(head, sizeof head, "%s %s", o->name, meta);
        else
            snprintf(head, sizeof head, "%s", o->name);
        default_text(o, def, sizeof def);
        if (o->kind == OPT_INT && o->multiple_of > 1) {
            char tmp[96];
            snprintf(tmp, sizeof tmp, " (a multiple of %d)%s", o->multiple_of, def);
            snprintf(def, sizeof def, "%s", tmp);
        }
        const char *h = o->help ? o->help : "";
        const char *nl = strchr(h, '\n');
        int first = nl ? (int)(nl - h) : (int)strlen(h);
        if (strlen(head) > 22)
            fprintf(f, "  %s\n  %-22s %.*s%s\n", head, "", first, h, nl ? "" : def);
        else
            fprintf(f, "  %-22s %.*s%s\n", head, first, h, nl ? "" : def);
        while (nl) { /* continuation lines, the default after the last one */
            const char *p = nl + 1;
            nl = strchr(p, '\n');
            int len = nl ? (int)(nl - p) : (int)strlen(p);
            fprintf(f, "  %-22s %.*s%s\n", "", len, p, nl ? "" : def);
        }
    }
    if (s->epilog) fprintf(f, "\n%s", s->epilog);
}
