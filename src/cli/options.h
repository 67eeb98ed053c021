/* One option table for every command (as stable-diffusion.cpp's ArgOptions): each command
 * describes its flags once — name, kind, destination, bounds, help — and cli_parse() reads
 * argv, checks every value with the one number parser (asam_parse_number), and cli_help() prints
 * `--help` from the same table, with each option's default taken from its destination before
 * parsing.
 *
 * Exit-code convention of the whole program (cli_parse's return values follow it):
 *   0 success (or --help printed), 2 usage error (unknown option, missing or malformed
 *   value, missing required option), 1 failure while running (bad file, bad data, I/O). */
#ifndef ASAM_CLI_OPTIONS_H
#define ASAM_CLI_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2, CLI_HELP = -1 };

typedef enum {
    OPT_FLAG,   /* no value: *(int *)dst = 1 */
    OPT_UNSET,  /* no value: *(int *)dst = 0 (--quiet, --no-augment) */
    OPT_COUNT,  /* no value: ++*(int *)dst (-v) */
    OPT_STR,    /* *(const char **)dst = value */
    OPT_INT,    /* *(int *)dst, a whole number in [lo, hi] */
    OPT_U64,    /* *(uint64_t *)dst, a whole number >= 0 (seeds) */
    OPT_DOUBLE, /* *(double *)dst, a finite number in [lo, hi]; fractions like 8/255 too */
    OPT_FLOAT,  /* *(float *)dst, as OPT_DOUBLE */
    OPT_CHOICE, /* *(int *)dst = index of the value in choices "a|b|c" */
    OPT_LIST,   /* repeatable: appended to the cli_list at dst */
    OPT_CUSTOM, /* parse(value, dst) returns 0, or -1 after writing why into err */
} cli_opt_kind;

/* Collected values of a repeatable option (OPT_LIST) or of positional arguments. */
typedef struct {
    const char **v;
    int n, max;
} cli_list;

typedef struct {
    const char *name; /* "--steps"; "-v|--verbose" for an alias */
    cli_opt_kind kind;
    void *dst;
    const char *meta; /* value placeholder in --help: "N", "FILE", ... */
    const char *help; /* may hold '\n' for continuation lines */
    double lo, hi;    /* bounds of OPT_INT / OPT_DOUBLE / OPT_FLOAT */
    const char *choices;
    int (*parse)(const char *value, void *dst, char *err, size_t n_err);
    int required;
    int no_default;  /* do not print "(default ...)" */
    int multiple_of; /* OPT_INT: the value must be a multiple of this (sizes) */
} cli_opt;

typedef struct {
    const char *cmd;      /* "eval", or "bench sam": used in messages and --help */
    const char *synopsis; /* after "usage: asam CMD " */
    const char *about;    /* paragraph before the options, or NULL */
    const cli_opt *opts;
    int n_opts;
    cli_list *positional; /* NULL: positional arguments are refused */
    const char *epilog;   /* paragraph after the options, or NULL */
} cli_spec;

#define CLI_NOPTS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Parse argv[1..argc-1] (argv[0] is the command name). Returns CLI_OK, CLI_HELP (help printed
 * on stdout: exit 0) or CLI_USAGE (one line on stderr: exit 2). */
int cli_parse(const cli_spec *spec, int argc, char **argv);
void cli_help(const cli_spec *spec, FILE *f);

/* The parsed exit code of cli_parse as the command's return value: 0 for CLI_HELP. */
static inline int cli_exit_code(int parse_rc) {
    return parse_rc == CLI_HELP ? 0 : parse_rc;
}

#endif
