/* asam: one program, many subcommands. Global flags (before the command):
 *   --threads N   number of CPU threads (default: OMP_NUM_THREADS or all cores) */
#include "cli/commands.h"
#include "asam/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name; /* as typed: underscores become dashes */
    asam_cmd_fn fn;
    const char *help;
} command;

#define ASAM_CMD_ENTRY(name, help) {#name, cmd_##name, help},
static const command commands[] = {ASAM_COMMANDS(ASAM_CMD_ENTRY)};
#undef ASAM_CMD_ENTRY

static void cmd_display_name(const char *name, char *out, size_t n) {
    snprintf(out, n, "%s", name);
    for (char *p = out; *p; p++)
        if (*p == '_') *p = '-';
}

static void usage(FILE *f) {
    fprintf(f, "usage: asam [--threads N] <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (!commands[i].fn) continue;
        char name[64];
        cmd_display_name(commands[i].name, name, sizeof name);
        fprintf(f, "  %-18s %s\n", name, commands[i].help);
    }
    fprintf(f, "\nRun 'asam <command> --help' for the options of one command.\n");
}

int main(int argc, char **argv) {
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            char *end;
            long n = strtol(argv[i + 1], &end, 10);
            if (*end || n < 1 || n > 4096) {
                fprintf(stderr, "asam: --threads: expected a positive integer, got '%s'\n",
                        argv[i + 1]);
                return 2;
            }
            asam_set_threads((int)n);
            i += 2;
        } else {
            fprintf(stderr, "asam: unknown option '%s' (see asam --help)\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++) {
        char name[64];
        cmd_display_name(commands[c].name, name, sizeof name);
        if (commands[c].fn && !strcmp(argv[i], name)) return commands[c].fn(argc - i, argv + i);
    }
    fprintf(stderr, "asam: unknown command '%s' (see asam --help)\n", argv[i]);
    return 2;
}
