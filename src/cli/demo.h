/* The `asam demo` command's shared state and stages (inside the CLI layer only):
 * cmd_demo.c parses options and runs the stages, demo_stages.c holds models, data, generate,
 * tune and eval, demo_report.c the report with its panels and plots. */
#ifndef ASAM_CLI_DEMO_H
#define ASAM_CLI_DEMO_H

#include "asam/asam.h"
#include "asam/generator.h"

#include <cjson/cJSON.h>

#define DEMO_SIZE 128     /* the world's image side: SD-mini 128 (latent 16), SAM-mini input 128 */
#define DEMO_WORLD_SEED 1 /* the seed the world's models were trained on (asam world --seed 1) */
#define MAX_STAGES 8
#define DEMO_N_SETS 9 /* training images clean and adversarial, test, six unseen sets */

typedef struct {
    const char *name;
    char status[512];
    double seconds;
    int ok;
} stage;

typedef struct {
    char out[2048], assets[2048];
    char sam[2300], sd[2300], cn[2300], tuned[2300], experiment[2300];
    char world[2300], train[2300], gen[2300], tune[2300], eval[2300];
    int images, heldout_n, steps, null_steps, iters, epochs, quick;
    stage st[MAX_STAGES];
    int n_st;
    asam_eval_cell cells[2 * DEMO_N_SETS]; // [model][dataset]: original, tuned x the sets
    int have_cells;
    double tune_loss[256];
    int tune_epochs;
    asam_generate_stats gstats;
} demo;

stage *stage_begin(demo *d, const char *name);
int stage_end(stage *s, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Settings of the generate stage (also quoted by the report). */
void demo_gen_options(const demo *d, asam_gen_opts *go);
int demo_write_json(const char *path, cJSON *j);
cJSON *demo_read_json(const char *path); /* NULL when absent or malformed */
/* The installed models folder (share/asam/models, holding world/). */
void demo_default_assets(char *out, size_t n);

int stage_models(demo *d);
int stage_data(demo *d);
int stage_generate(demo *d);
int stage_tune(demo *d);
int stage_eval(demo *d);
int stage_report(demo *d);

/* Names of the evaluation sets, in the order of demo.cells. */
extern const char *const demo_set_names[DEMO_N_SETS];

#endif
