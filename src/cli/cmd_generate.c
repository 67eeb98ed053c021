/* asam generate / invert / attack: the ASAM generator over SA-1B images (see asam/generator.h).
 * The three commands share one option table; invert and attack are generate restricted to one
 * half. parse -> load models -> run (dataset or listed images; outputs written per image). */
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "asam/dist.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/generator.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *cmd;
    int mode;
    asam_gen_opts o;
    asam_generate_cfg cfg;
    const char *sd, *cn, *cn_adv, *sam;
    cli_list images;
} gen_args;

static int parse_shard(const char *v, void *dst, char *err, size_t n) {
    asam_generate_cfg *cfg = dst;
    int s, k;
    char tail;
    if (sscanf(v, "%d/%d%c", &s, &k, &tail) != 2 || k < 1 || s < 0 || s >= k) {
        snprintf(err, n, "expected I/N with 0 <= I < N");
        return -1;
    }
    cfg->shard = s, cfg->n_shards = k;
    return 0;
}

static int parse_args(gen_args *a, int argc, char **argv) {
    asam_gen_opts_default(&a->o);
    a->cfg = (asam_generate_cfg){.mode = a->mode, .n_shards = 1};
    a->images = (cli_list){calloc((size_t)argc + 1, sizeof(char *)), 0, argc};
    int grad = a->o.grad == ASAM_GRAD_FULL;
    const int attack = a->mode & ASAM_GEN_ATTACK;
    const cli_opt opts[] = {
        {"--sd", OPT_STR, &a->sd, "FILE|DIR", "SD 1.5 (CompVis single file or diffusers folder)",
         .required = 1},
        {"--controlnet", OPT_STR, &a->cn, "FILE",
         "mask ControlNet (v1.0/v1.1 layout); the inversion's (official _mask_inv)"},
        {"--attack-controlnet", OPT_STR, &a->cn_adv, "FILE",
         "the attack's ControlNet (official _mask_adv; default: --controlnet)"},
        {"--control-dir", OPT_STR, &a->o.control_dir, "DIR",
         "pre-rendered control maps DIR/STEM.png (official control_mask_dir);\n"
         "default: rendered from the annotations"},
        {"--force", OPT_FLAG, &a->o.force, NULL,
         "redo outputs recorded with other options (default: refuse, naming the option)"},
        {"--adv-png", OPT_FLAG, &a->o.adv_png, NULL,
         "save adversarial images as lossless PNG (official: JPEG quality 75)"},
        {"--sam", OPT_STR, &a->sam, "FILE", "the attacked SAM (or EfficientSAM) checkpoint",
         .required = attack},
        {"--captions", OPT_STR, &a->cfg.captions, "FILE",
         "JSON lines {\"img\": \"sa_1.jpg\", \"prompt\": \"...\"}"},
        {"--out", OPT_STR, &a->cfg.out, "DIR", "output folder", .required = 1},
        {"--data", OPT_STR, &a->cfg.data, "sa1b:DIR", "folder of sa_N.jpg + sa_N.json"},
        {"--steps", OPT_INT, &a->o.steps, "N", "DDIM steps", 1, 1000},
        {"--cfg", OPT_FLOAT, &a->o.cfg, "W", "classifier-free guidance", 0, 100},
        {"--control-scale", OPT_FLOAT, &a->o.control_scale, "S", "ControlNet scale", 0, 100},
        {"--size", OPT_INT, &a->o.size, "N", "SD image side", 8, 4096, .multiple_of = 8},
        {"--null-steps", OPT_INT, &a->o.null_steps, "N", "null-text Adam steps per timestep", 0,
         10000},
        {"--null-lr", OPT_FLOAT, &a->o.null_lr, "X", "null-text base learning rate", 0, 100},
        {"--iters", OPT_INT, &a->o.iters, "N",
         "attack iterations: iterates 0..N-1 scored, 0 = the clean x_T (official --steps)", 1,
         10000},
        {"--alpha", OPT_FLOAT, &a->o.alpha, "X", "MI-FGSM step", 0, 100},
        {"--eps", OPT_FLOAT, &a->o.eps, "X", "L-inf radius around x_T", 0, 100},
        {"--w-bce", OPT_FLOAT, &a->o.w_bce, "X", "weight of the attack's BCE term (official 100)",
         0, 1e6},
        {"--w-dice", OPT_FLOAT, &a->o.w_dice, "X",
         "weight of the attack's Dice term (official 100)", 0, 1e6},
        {"--w-l2", OPT_FLOAT, &a->o.w_l2, "X",
         "weight of the attack's L2 pull to the clean image (official 1; 0 = mask terms only)", 0,
         1e6},
        {"--null-checkpointing", OPT_CHOICE, &a->o.null_checkpointing, NULL,
         "null-text steps: auto keeps the UNet's activations (one forward less per step) when\n"
         "they fit in the memory available; on always re-computes them; off never does",
         .choices = "auto|on|off"},
        {"--max-boxes", OPT_INT, &a->o.max_boxes, "N", "GT box prompts per image", 1, 100000},
        {"--grad", OPT_CHOICE, &grad, NULL,
         "skip: dL/dz0 in place of dL/dx_T (official code);\n"
         "full: the chain rule through every DDIM step (the paper)",
         .choices = "skip|full"},
        {"--shard", OPT_CUSTOM, &a->cfg, "I/N", "images with index % N == I", .parse = parse_shard},
        {"--limit", OPT_INT, &a->cfg.limit, "N", "only the first N images (0 = all)", 0, 1e9},
        {"-v|--verbose", OPT_COUNT, &a->o.verbose, NULL, "progress of every step"},
    };
    char synopsis[256];
    snprintf(synopsis, sizeof synopsis,
             "--sd FILE|DIR [--controlnet FILE] %s--out DIR (--data sa1b:DIR | IMAGE...) "
             "[options]",
             attack ? "--sam FILE " : "");
    const cli_spec spec = {
        a->cmd,
        synopsis,
        "IMAGE: sa_N.jpg with its annotations sa_N.json beside it\n",
        opts,
        CLI_NOPTS(opts),
        &a->images,
        "outputs: OUT/inv/STEM.safetensors, OUT/adv/STEM.jpg (.png with --adv-png),\n"
        "         OUT/adv/STEM.attack.json,\n"
        "         OUT/summary.json; finished outputs are skipped (resumable)\n"};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return rc;
    a->o.grad = grad ? ASAM_GRAD_FULL : ASAM_GRAD_SKIP;
    if (!a->cfg.data && !a->images.n) {
        fprintf(stderr, "asam %s: give --data sa1b:DIR or IMAGE files (see asam %s --help)\n",
                a->cmd, a->cmd);
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* The listed images, each with sa_N.json beside it. */
static int run_images(const gen_args *a, const asam_gen_models *m) {
    asam_captions *caps = NULL;
    if (a->cfg.captions && asam_captions_load(a->cfg.captions, &caps))
        return cli_fail(a->cmd, "%s", asam_last_error());
    int rc = 0;
    /* under MPI, rank r takes images r, r + N, ... (asam/dist.h) */
    for (int k = asam_dist_rank(); k < a->images.n && !rc; k += asam_dist_size()) {
        const char *img = a->images.v[k];
        char ann[4096];
        const char *dot = strrchr(img, '.'), *sl = strrchr(img, '/');
        int stem_len = dot && (!sl || dot > sl) ? (int)(dot - img) : (int)strlen(img);
        snprintf(ann, sizeof ann, "%.*s.json", stem_len, img);
        float b, af;
        if (caps && !asam_captions_has(caps, sl ? sl + 1 : img)) {
            rc = cli_fail(a->cmd, "%s: no caption for %s", a->cfg.captions, sl ? sl + 1 : img);
            break;
        }
        if (asam_generate_image(m, &a->o, img, ann, asam_captions_get(caps, sl ? sl + 1 : img),
                                a->cfg.out, a->mode, &b, &af, NULL))
            rc = cli_fail(a->cmd, "%s", asam_last_error());
        else if (!isnan(b))
            fprintf(stderr, "%s: mean IoU %.4f -> %.4f\n", img, b, af);
    }
    asam_captions_free(caps);
    return rc;
}

/* The dataset; exit 3 when the test hook stopped the run early. */
static int run_dataset(const gen_args *a, const asam_gen_models *m) {
    asam_generate_stats st;
    int rc = asam_generate(m, &a->o, &a->cfg, &st);
    if (rc < 0) return cli_fail(a->cmd, "%s", asam_last_error());
    if (rc == 1) {
        fprintf(stderr, "asam %s: stopped after %d new images (test hook)\n", a->cmd,
                st.done - st.skipped);
        return 3;
    }
    return 0;
}

static int gen_cli_main(const char *cmd, int mode, int argc, char **argv) {
    gen_args a = {.cmd = cmd, .mode = mode};
    int rc = parse_args(&a, argc, argv);
    /* --out is checked before the models load (seconds to minutes for SD 1.5) */
    if (!rc && (asam_mkdirs(a.cfg.out) || access(a.cfg.out, W_OK) != 0))
        rc = cli_fail(cmd, "%s: output folder cannot be created or written", a.cfg.out);
    if (!rc) {
        asam_gen_models m;
        if (asam_gen_models_load(a.sd, a.cn, (mode & ASAM_GEN_ATTACK) ? a.sam : NULL, &m) ||
            (a.cn_adv && (mode & ASAM_GEN_ATTACK) &&
             asam_sd_controlnet_open(a.cn_adv, m.sd->unet, &m.controlnet_adv))) {
            rc = cli_fail(cmd, "%s", asam_last_error());
            asam_gen_models_free(&m);
        } else {
            m.controlnet_adv_path = a.cn_adv;
            rc = a.cfg.data ? run_dataset(&a, &m) : run_images(&a, &m);
            asam_gen_models_free(&m);
        }
    }
    free(a.images.v);
    return cli_exit_code(rc);
}

int cmd_generate(int argc, char **argv) {
    return gen_cli_main("generate", ASAM_GEN_BOTH, argc, argv);
}

/* The first half of generate: DDIM + null-text inversion with the mask ControlNet. */
int cmd_invert(int argc, char **argv) {
    return gen_cli_main("invert", ASAM_GEN_INVERT, argc, argv);
}

/* The second half: the MI-FGSM latent attack against SAM from stored inversions (OUT/inv),
 * writing the adversarial images and records. */
int cmd_attack(int argc, char **argv) {
    return gen_cli_main("attack", ASAM_GEN_ATTACK, argc, argv);
}
