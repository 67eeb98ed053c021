/* asam_experiment_report on a hand-made experiment folder: the means and sample standard
 * deviations over seeds, the unseen-set mean, the ordering sentence, the attack statistics and
 * the charts all follow the input files (numbers chosen so that each is easy to check), and a
 * folder without evaluations fails with one message. */
#include "test_util.h"

#include "asam/error.h"
#include "asam/experiment.h"
#include "asam/fileio.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put(const char *path, const char *text) {
    CHECK(asam_write_file_atomic(path, text, strlen(text)) == 0, "write %s", path);
}

/* One seed's eval table: untuned 0.80/0.50/0.60, clean +d, pgd -0.1, asam_skip +0.05+d. */
static void eval_json(const char *path, int seed, double d) {
    char buf[4096];
    const char *models[4] = {"/m/sam_mini.safetensors", "x/tune/clean/seedS/sam_tuned.safetensors",
                             "x/tune/pgd/seedS/sam_tuned.safetensors",
                             "x/tune/asam_skip/seedS/sam_tuned.safetensors"};
    const char *sets[3] = {"test", "unseen_texture", "unseen_palette"};
    const double base[3] = {0.80, 0.50, 0.60}, delta[4] = {0, 0.01, -0.10, 0.05};
    size_t k = (size_t)snprintf(buf, sizeof buf, "{\"protocol\": \"asam\", \"datasets\": [");
    for (int s = 0; s < 3; s++) {
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s{\"name\": \"%s\", \"results\": [",
                              s ? ", " : "", sets[s]);
        for (int m = 0; m < 4; m++)
            k += (size_t)snprintf(buf + k, sizeof buf - k,
                                  "%s{\"model\": \"%s\", \"miou\": %.6f, \"biou\": 0.5}",
                                  m ? ", " : "", models[m], base[s] + delta[m] + (m ? d : 0));
        k += (size_t)snprintf(buf + k, sizeof buf - k, "]}");
    }
    snprintf(buf + k, sizeof buf - k, "]}");
    (void)seed;
    put(path, buf);
}

static double num(const cJSON *o, const char *a, const char *b, const char *c) {
    const cJSON *x = cJSON_GetObjectItem(o, a);
    if (b) x = cJSON_GetObjectItem(x, b);
    if (c) x = cJSON_GetObjectItem(x, c);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

int main(void) {
    char dir[256], p[512];
    snprintf(dir, sizeof dir, "test_expreport.%d", (int)getpid());
    snprintf(p, sizeof p, "%s/eval", dir);
    asam_mkdirs(p);
    snprintf(p, sizeof p, "%s/asam_skip/adv", dir);
    asam_mkdirs(p);

    asam_experiment_opts o = {.dir = dir, .n_panels = 0, .reproduce = "scripts/experiment.sh x y"};
    CHECK(asam_experiment_report(&o) == -1 && strstr(asam_last_error(), "no seed*.json"),
          "a folder without evaluations fails: %s", asam_last_error());

    /* seeds shift the tuned models by -0.01, 0, +0.01: mean = the middle, sample std 0.01 */
    const double d[3] = {-0.01, 0, 0.01};
    for (int s = 0; s < 3; s++) {
        snprintf(p, sizeof p, "%s/eval/seed%d.json", dir, s + 1);
        eval_json(p, s + 1, d[s]);
    }
    /* two attack records: drops 0.2 and 0 (kept the clean one) */
    snprintf(p, sizeof p, "%s/asam_skip/adv/sa_1.attack.json", dir);
    put(p, "{\"miou\": [0.9, 0.8, 0.7], \"miou_clean\": 0.9, \"miou_adv\": 0.7, \"best_iter\": 2}");
    snprintf(p, sizeof p, "%s/asam_skip/adv/sa_2.attack.json", dir);
    put(p, "{\"miou\": [0.5, 0.6, 0.7], \"miou_clean\": 0.5, \"miou_adv\": 0.5, \"best_iter\": 0}");
    snprintf(p, sizeof p, "%s/settings.md", dir);
    put(p, "## Settings\n\nSETTINGS-MARKER\n");

    CHECK(asam_experiment_report(&o) == 0, "report: %s", asam_last_error());
    char *txt = NULL;
    size_t n;
    snprintf(p, sizeof p, "%s/results.json", dir);
    CHECK(asam_read_file(p, &txt, &n) == 0, "results.json written");
    cJSON *r = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    CHECK(r != NULL, "results.json parses");
    const cJSON *rep = cJSON_GetObjectItem(r, "reproduce");
    CHECK(cJSON_IsString(rep) && !strcmp(rep->valuestring, "scripts/experiment.sh x y"),
          "results.json quotes the command");
    const cJSON *vs = cJSON_GetObjectItem(r, "variants");
    CHECK(cJSON_GetArraySize(vs) == 4, "four variants");
    const char *order[4] = {"untuned", "clean", "pgd", "asam_skip"};
    const double want_unseen[4] = {0.55, 0.56, 0.45, 0.60};
    for (int i = 0; i < 4 && i < cJSON_GetArraySize(vs); i++) {
        const cJSON *v = cJSON_GetArrayItem(vs, i);
        const cJSON *name = cJSON_GetObjectItem(v, "variant");
        CHECK(cJSON_IsString(name) && !strcmp(name->valuestring, order[i]), "variant %d is %s", i,
              order[i]);
        double m = num(v, "miou", "test", "mean"), sd = num(v, "miou", "test", "std");
        double want = 0.80 + (i == 1 ? 0.01 : i == 2 ? -0.10 : i == 3 ? 0.05 : 0);
        CHECK(fabs(m - want) < 1e-6, "%s test mean %.6f, want %.6f", order[i], m, want);
        CHECK(fabs(sd - (i ? 0.01 : 0)) < 1e-6, "%s test std %.6f", order[i], sd);
        CHECK(num(v, "miou", "test", "seeds") == 3, "%s: three seeds", order[i]);
        double um = num(v, "unseen_mean", "mean", NULL);
        CHECK(fabs(um - want_unseen[i]) < 1e-6, "%s unseen mean %.6f, want %.6f", order[i], um,
              want_unseen[i]);
    }
    CHECK(fabs(num(r, "asam_skip", "mean_drop", NULL) - 0.1) < 1e-9, "mean drop 0.1");
    CHECK(fabs(num(r, "asam_skip", "share_lower", NULL) - 0.5) < 1e-9, "share lower 0.5");
    const cJSON *it = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "asam_skip"), "miou_per_iter");
    CHECK(cJSON_GetArraySize(it) == 3 &&
              fabs(cJSON_GetArrayItem(it, 0)->valuedouble - 0.7) < 1e-9 &&
              fabs(cJSON_GetArrayItem(it, 2)->valuedouble - 0.7) < 1e-9,
          "IoU per iteration averaged over images");
    cJSON_Delete(r);

    snprintf(p, sizeof p, "%s/report.md", dir);
    txt = NULL;
    CHECK(asam_read_file(p, &txt, &n) == 0, "report.md written");
    if (txt) {
        CHECK(strstr(txt, "SETTINGS-MARKER") != NULL, "settings copied into the report");
        CHECK(strstr(txt, "scripts/experiment.sh x y") != NULL, "the command is quoted");
        CHECK(strstr(txt, "| ASAM (skip) | 0.8500 ± 0.0100 |") != NULL, "table cell mean ± std");
        CHECK(strstr(txt, "| untuned | 0.8000 |") != NULL, "deterministic cell without ±");
        CHECK(strstr(txt, "ASAM (skip) 0.6000 vs untuned 0.5500: higher (+0.0500)") != NULL,
              "ordering sentence for ASAM");
        CHECK(strstr(txt, "PGD 0.4500 vs untuned 0.5500: lower (-0.1000)") != NULL,
              "ordering sentence for PGD");
        CHECK(strstr(txt, "| ASAM (skip) | 2 | 0.1000 | 1 (50%) |") != NULL, "attack row");
        free(txt);
    }
    const char *svgs[2] = {"miou.svg", "attack_iou.svg"};
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, svgs[k]);
        txt = NULL;
        CHECK(asam_read_file(p, &txt, &n) == 0 && strstr(txt, "<svg") && strstr(txt, "</svg>"),
              "%s written", svgs[k]);
        if (txt && k == 0)
            CHECK(strstr(txt, "unseen mean") && strstr(txt, "ASAM (skip)") &&
                      strstr(txt, "mIoU (mean ± std over seeds)"),
                  "bar chart labels: groups, legend, axis");
        free(txt);
    }
    if (!test_failures && !getenv("ASAM_TEST_KEEP"))
        test_rm_rf(dir);
    else
        fprintf(stderr, "left %s for inspection\n", dir);
    return test_finish("test_experiment_report");
}
