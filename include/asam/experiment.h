/* The report of the world experiment (issue 9; scripts/experiment.sh runs it): SAM-mini tuned
 * on clean, PGD and ASAM (skip- and full-gradient) images over several seeds, evaluated on the
 * world's in-distribution test split and its shifted sets.
 *
 * asam_experiment_report reads what the script left in DIR:
 *   DIR/eval/seed*.json      `asam eval --json` tables, one per tuning seed; a model's variant
 *                            is the folder after "tune/" in its path ("untuned" otherwise)
 *   DIR/eval/attacks.json    optional: the untuned model on the attacked training images
 *   DIR/VARIANT/adv/STEM.attack.json  per-image attack records of the generate runs
 *   DIR/settings.md          optional: the settings, copied into the report
 * and writes DIR/report.md, DIR/results.json, DIR/miou.svg (bar chart, mean +- std over seeds),
 * DIR/attack_iou.svg (mean IoU per attack iteration) and DIR/panel_STEM.png (a few images as
 * each variant saw them, with their ground-truth masks), each atomically. Every number in the
 * report comes from those files. */
#ifndef ASAM_EXPERIMENT_H
#define ASAM_EXPERIMENT_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *dir;       /* the experiment folder */
    const char *world;     /* the world folder (its train set holds the clean images), or NULL */
    int n_panels;          /* images shown side by side per variant (default 3) */
    const char *reproduce; /* the command line that reproduces the run, quoted in the report */
} asam_experiment_opts;

int asam_experiment_report(const asam_experiment_opts *o);

#ifdef __cplusplus
}
#endif
#endif
