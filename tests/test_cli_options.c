/* The CLI's option table (src/cli/options.c): every kind, bounds, fractions, multiples,
 * choices, lists, required options, positional arguments, the exit-code convention and the
 * generated --help with defaults. */
#include "cli/options.h"
#include "test_util.h"

#include <stdint.h>

typedef struct {
    int flag, quiet, verbose, n, size, choice;
    uint64_t seed;
    double x;
    float f;
    const char *s;
    const char *items[2], *pos[2];
    cli_list list, positional;
} args;

static int parse(args *a, int argc, char **argv) {
    *a = (args){.quiet = 1, .n = 5, .size = 64, .x = 0.5, .f = 2, .s = "dflt"};
    a->list = (cli_list){a->items, 0, 2};
    a->positional = (cli_list){a->pos, 0, 2};
    const cli_opt opts[] = {
        {"--flag", OPT_FLAG, &a->flag, NULL, "a flag"},
        {"--quiet", OPT_UNSET, &a->quiet, NULL, "clears"},
        {"-v|--verbose", OPT_COUNT, &a->verbose, NULL, "counts"},
        {"--n", OPT_INT, &a->n, "N", "an int", 1, 10},
        {"--size", OPT_INT, &a->size, "N", "a size", 8, 4096, .multiple_of = 8},
        {"--seed", OPT_U64, &a->seed, "N", "a seed"},
        {"--x", OPT_DOUBLE, &a->x, "X", "a double", 0, 1},
        {"--f", OPT_FLOAT, &a->f, "X", "a float", -10, 10},
        {"--s", OPT_STR, &a->s, "S", "a string"},
        {"--choice", OPT_CHOICE, &a->choice, NULL, "a choice", .choices = "skip|full"},
        {"--item", OPT_LIST, &a->list, "I", "repeatable", .required = 1},
    };
    const cli_spec spec = {"t", "[options]", NULL, opts, CLI_NOPTS(opts), &a->positional, NULL};
    return cli_parse(&spec, argc, argv);
}

#define ARGV(...)                                                                                  \
    (char *[]) {                                                                                   \
        "t", __VA_ARGS__                                                                           \
    }
#define NARG(...) ((int)(sizeof((char *[]){"t", __VA_ARGS__}) / sizeof(char *)))
#define PARSE(a, ...) parse(a, NARG(__VA_ARGS__), ARGV(__VA_ARGS__))

static void test_values(void) {
    args a;
    CHECK(PARSE(&a, "--item", "i", "--flag", "--quiet", "-v", "--verbose", "--n", "10", "--size",
                "1024", "--seed", "18446744073709551615", "--x", "8/255", "--f", "-2.5", "--s",
                "hello", "--choice", "full", "p1", "--", "--p2") == CLI_OK,
          "every kind parses");
    CHECK(a.flag == 1 && a.quiet == 0 && a.verbose == 2 && a.n == 10 && a.size == 1024, "ints");
    CHECK(a.seed == UINT64_MAX, "u64 keeps all 64 bits");
    CHECK(a.x == 8.0 / 255.0 && a.f == -2.5f, "fraction and float");
    CHECK(!strcmp(a.s, "hello") && a.choice == 1 && a.list.n == 1, "string, choice, list");
    CHECK(a.positional.n == 2 && !strcmp(a.pos[1], "--p2"), "positional args, -- ends options");
    CHECK(PARSE(&a, "--item", "i") == CLI_OK && a.n == 5 && a.quiet == 1 && !strcmp(a.s, "dflt"),
          "defaults kept");
}

static void test_errors(void) {
    args a;
    CHECK(PARSE(&a, "--item", "i", "--n", "11") == CLI_USAGE, "above the bound");
    CHECK(PARSE(&a, "--item", "i", "--n", "2.5") == CLI_USAGE, "not a whole number");
    CHECK(PARSE(&a, "--item", "i", "--n", "3x") == CLI_USAGE, "trailing junk");
    CHECK(PARSE(&a, "--item", "i", "--size", "100") == CLI_USAGE, "not a multiple of 8");
    CHECK(PARSE(&a, "--item", "i", "--x", "1/0") == CLI_USAGE, "division by zero");
    CHECK(PARSE(&a, "--item", "i", "--x", "nan") == CLI_USAGE, "nan");
    CHECK(PARSE(&a, "--item", "i", "--seed", "-1") == CLI_USAGE, "negative seed");
    CHECK(PARSE(&a, "--item", "i", "--choice", "half") == CLI_USAGE, "unknown choice");
    CHECK(PARSE(&a, "--item", "i", "--bogus") == CLI_USAGE, "unknown option");
    CHECK(PARSE(&a, "--item", "i", "--n") == CLI_USAGE, "missing value");
    CHECK(PARSE(&a, "--n", "3") == CLI_USAGE, "required option missing");
    CHECK(PARSE(&a, "--item", "1", "--item", "2", "--item", "3") == CLI_USAGE, "list overflow");
    CHECK(PARSE(&a, "--item", "i", "a", "b", "c") == CLI_USAGE, "too many positional args");
    CHECK(PARSE(&a, "--item", "i", "--help") == CLI_HELP && cli_exit_code(CLI_HELP) == 0,
          "--help exits 0");
}

static void test_help(void) {
    args a = {.n = 5, .size = 64, .x = 0.5, .f = 2, .s = "dflt", .choice = 1};
    a.list = (cli_list){a.items, 0, 2};
    const cli_opt opts[] = {
        {"--n", OPT_INT, &a.n, "N", "an int", 1, 10},
        {"--size", OPT_INT, &a.size, "N", "a size", 8, 4096, .multiple_of = 8},
        {"--s", OPT_STR, &a.s, "S", "two\nlines"},
        {"--choice", OPT_CHOICE, &a.choice, NULL, "a choice", .choices = "skip|full"},
    };
    const cli_spec spec = {"t", "[options]", "About.\n", opts, CLI_NOPTS(opts), NULL, "End.\n"};
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    cli_help(&spec, f);
    fclose(f);
    CHECK(strstr(buf, "usage: asam t [options]") != NULL, "usage line");
    CHECK(strstr(buf, "--n N") && strstr(buf, "an int (default 5)"), "int default: %s", buf);
    CHECK(strstr(buf, "a size (a multiple of 8) (default 64)") != NULL, "multiple shown");
    CHECK(strstr(buf, "lines (default dflt)") != NULL, "default after the last line");
    CHECK(strstr(buf, "--choice skip|full") && strstr(buf, "(default full)"), "choice default");
    CHECK(strstr(buf, "About.") && strstr(buf, "End."), "about and epilog");
}

int main(void) {
    test_values();
    test_errors();
    test_help();
    if (!test_failures) printf("ok   option table: kinds, errors, help\n");
    return test_failures ? 1 : 0;
}
