/* asam tune: train SAM's output tokens (iou_token + mask_tokens) on (adversarial) data.
 * parse (option table) -> run (asam_tune writes every output) -> one summary line. */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/dist.h"
#include "asam/asam.h"
#include "asam/error.h"

#include <stdio.h>
#include <string.h>

#define MAX_DATA 64

typedef struct {
    asam_tune_opts o;
    const char *data[MAX_DATA];
    cli_list data_list;
    int loss_kind, no_augment, quiet;
} tune_args;

/* "box,points,mask" -> ASAM_PROMPT_* bits */
static int parse_prompts(const char *v, void *dst, char *err, size_t n) {
    int bits = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "box"))
            bits |= ASAM_PROMPT_BOX;
        else if (!strcmp(t, "points"))
            bits |= ASAM_PROMPT_POINTS;
        else if (!strcmp(t, "mask"))
            bits |= ASAM_PROMPT_MASK;
        else {
            snprintf(err, n, "unknown kind '%s' (box, points, mask)", t);
            return -1;
        }
    }
    if (!bits) {
        snprintf(err, n, "no prompt kind (box, points, mask)");
        return -1;
    }
    *(int *)dst = bits;
    return 0;
}

static int parse_args(tune_args *a, int argc, char **argv) {
    asam_tune_defaults(&a->o);
    a->data_list = (cli_list){a->data, 0, MAX_DATA};
    const cli_opt opts[] = {
        {"--model", OPT_STR, &a->o.model_path, "SAM.pth",
         "SAM or EfficientSAM (EASAM) checkpoint to tune; the family is\n"
         "read from the file",
         .required = 1},
        {"--data", OPT_LIST, &a->data_list, "DATASET", "training data; repeatable", .required = 1},
        {"--out", OPT_STR, &a->o.out_dir, "DIR", "output folder", .required = 1},
        {"--epochs", OPT_INT, &a->o.epochs, "N",
         "epochs; lr factor (e+1)/10 for e < 10, else 0.5^(e-9)", 1, 256},
        {"--lr", OPT_FLOAT, &a->o.lr, "X", "base learning rate, Adam betas 0.9/0.999, no decay",
         1e-30, 1e30},
        {"--batch", OPT_INT, &a->o.batch, "N",
         "images per optimiser step (official: 4 per GPU x 8 GPUs)", 1, 4096},
        {"--force", OPT_FLAG, &a->o.force, NULL,
         "start over when OUT/state.safetensors was made with other options"},
        {"--keep-last-batch", OPT_FLAG, &a->o.keep_last, NULL,
         "also step on the last partial batch (official: dropped)"},
        {"--masks-per-image", OPT_INT, &a->o.masks_per_image, "N",
         "first N annotations of each image, wrapping around", 1, 64},
        {"--prompts", OPT_CUSTOM, &a->o.prompts, "LIST",
         "prompt kinds drawn per image: box,points,mask (all three)", .parse = parse_prompts},
        {"--box-noise", OPT_FLOAT, &a->o.box_noise, "X", "HQ-SAM box jitter scale (0 = exact box)",
         0, 1e30},
        {"--loss", OPT_CHOICE, &a->loss_kind, NULL,
         "BCE+Dice on 112x112 uncertainty-sampled points, or on\n"
         "the full 256x256 low-res logits",
         .choices = "points|full"},
        {"--points", OPT_INT, &a->o.loss.n_points, "N", "sampled points per mask (--loss points)",
         1, 1 << 20},
        {"--no-augment", OPT_FLAG, &a->no_augment, NULL,
         "no flip / large-scale jitter: embeddings computed once and cached"},
        {"--cache", OPT_STR, &a->o.cache_dir, "DIR", "embedding cache folder (DIR/cache)"},
        {"--seed", OPT_U64, &a->o.seed, "N", "random seed"},
        {"--limit", OPT_INT, &a->o.limit, "N", "use at most N images per dataset", 1, 1 << 30,
         .no_default = 1},
        {"--resume", OPT_FLAG, &a->o.resume, NULL,
         "continue from DIR/state.safetensors (last completed epoch)"},
        {"--stop-after", OPT_INT, &a->o.stop_after, "N",
         "stop after N completed epochs (resume later with --resume)", 1, 256, .no_default = 1},
        {"--point-group", OPT_INT, &a->o.point_group, "N",
         "images deciding together whether point prompts are drawn\n"
         "(official: a GPU's 4; a mask below 10 px stops them)",
         1, 4096},
        {"--points-any-size", OPT_FLAG, &a->o.points_any, NULL,
         "asam's variant: points for every mask, drawn with\n"
         "replacement below 10 px (official: none for the group)"},
        {"--drop-cropped-masks", OPT_FLAG, &a->o.drop_cropped, NULL,
         "asam's variant: drop masks the jitter's crop emptied\n"
         "(official: kept, box (1e8, 1e8, 0, 0), zero target)"},
        {"--adv-resized", OPT_FLAG, &a->o.adv_resized, NULL,
         "asam's variant: adv: images resized to the annotation size\n"
         "(official: the saved square image, masks squashed to it)"},
        {"--quiet", OPT_FLAG, &a->quiet, NULL, "no progress lines"},
    };
    const cli_spec spec = {
        "tune",
        "--model SAM.pth --data DATASET [--data ...] --out DIR [options]",
        "Tune only mask_decoder.iou_token and mask_decoder.mask_tokens (1,280 values) with Adam,\n"
        "as ASAM's tuning stage (defaults = the official code's numbers).\n"
        "\n"
        "datasets: sa1b:DIR | sa1b:SHARD.tar | adv:ADVDIR:GTDIR | coco:ANN.json:IMGDIR |\n"
        "          masks:IMGDIR:MASKDIR | idmap:IMGDIR:MAPDIR[:ignore=V]\n",
        opts,
        CLI_NOPTS(opts),
        NULL,
        "outputs in DIR: sam_tuned.pth (torch.save state dict, official keys; for an\n"
        "EfficientSAM efficientsam_tuned.pt, its official {\"model\": state_dict}),\n"
        "sam_tuned.safetensors, decoder_tokens.safetensors, state.safetensors (after every\n"
        "epoch), cache/ (--no-augment).\n"};
    a->loss_kind = a->o.loss.points ? 0 : 1;
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return rc;
    a->o.loss.points = a->loss_kind == 0;
    if (a->no_augment) a->o.augment = 0;
    a->o.progress = !a->quiet;
    a->o.data = a->data;
    a->o.n_data = a->data_list.n;
    return CLI_OK;
}

int cmd_tune(int argc, char **argv) {
    tune_args a = {0};
    int rc = parse_args(&a, argc, argv);
    if (rc) return cli_exit_code(rc);
    asam_tune_report rep;
    if (asam_tune(&a.o, &rep)) return cli_fail("tune", "%s", asam_last_error());
    if (a.o.progress && asam_dist_rank() == 0) /* one line per job */
        fprintf(stderr, "asam tune: %d/%d epochs done on %d images; wrote the tuned model to %s\n",
                rep.epochs_done, a.o.epochs, rep.n_images, a.o.out_dir);
    return 0;
}
