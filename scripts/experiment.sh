#!/bin/bash
# The world experiment (issue 9): does tuning SAM-mini's output tokens on ASAM's natural
# adversarial images help on shifted data, and does pixel-space PGD tuning hurt, as the paper
# reports for SAM ViT-B? Every stage is an ordinary asam command and resumes where it stopped
# (rerun the same line after a kill); the report is `asam experiment-report`.
#
#   scripts/experiment.sh ASAM_BIN OUT_DIR
#
# Settings (environment; defaults are the official numbers scaled to the 128 px world, each one
# listed in OUT_DIR/settings.md):
#   N=200          training images attacked and tuned on (the first N of the world's train set)
#   N_FULL=$N      images given the full-chain gradient (the first N_FULL)
#   SEEDS="1 2 3"  tuning seeds (the attacks are deterministic; tuning draws crops and points)
#   SD_STEPS=20    DDIM steps (official 50; see settings.md for why)
#   NULL_STEPS=10 ITERS=10 ALPHA=0.02 EPS=0.2 CFG=7.5   official values
#   SAM, SD, CN    the world's trained models (default: data/world in this repository)
#   THREADS=2
set -euo pipefail
BIN=$(realpath "$1")
OUT=$2
HERE=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-200}
N_FULL=${N_FULL:-$N}
SEEDS=${SEEDS:-"1 2 3"}
SD_STEPS=${SD_STEPS:-20}
NULL_STEPS=${NULL_STEPS:-10}
ITERS=${ITERS:-10}
ALPHA=${ALPHA:-0.02}
EPS=${EPS:-0.2}
CFG=${CFG:-7.5}
SAM=${SAM:-$HERE/data/world/sam_mini.safetensors}
SD=${SD:-$HERE/data/world/sd}
CN=${CN:-$HERE/data/world/controlnet.safetensors}
THREADS=${THREADS:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
A() { "$BIN" --threads "$THREADS" "$@"; }

# tuning takes 32 images per Adam step and drops the last partial batch (official): a set smaller
# than one batch would make no step at all (asam tune refuses it)
[ "$N" -ge 32 ] && [ "$N_FULL" -ge 32 ] || { echo "experiment: N and N_FULL must be >= 32 (one tuning batch)" >&2; exit 2; }
mkdir -p "$OUT/eval"
W=$OUT/world
SETS="val test unseen_texture unseen_palette unseen_lighting unseen_blur_noise unseen_shapes unseen_clutter"
for f in "$SAM" "$CN"; do [ -f "$f" ] || { echo "experiment: $f: no such model" >&2; exit 1; }; done
[ -d "$SD" ] || [ -f "$SD" ] || { echo "experiment: $SD: no such model" >&2; exit 1; }

cat > "$OUT/settings.md" <<EOF
## Settings

| setting | official (SAM ViT-B, SD 1.5, SA-1B) | here (the 128 px world) |
| --- | --- | --- |
| images attacked and tuned on | 11,187 (1% of SA-1B) | the first $N training scenes (full-chain gradient: the first $N_FULL) |
| SD image side / latent | 512 / 64x64 | 128 / 16x16 (VAE-mini, UNet-mini, CLIP-mini, mask ControlNet: data/world) |
| SAM input side / low-res masks | 1024 / 256 | 128 / 32 (SAM-mini) |
| DDIM steps | 50 | $SD_STEPS (cost: every step is paid 1 + null-text + attack iterations times) |
| null-text steps per timestep, lr | 10, 0.01 | $NULL_STEPS, 0.01 |
| guidance | 7.5 | $CFG |
| attack iterations, alpha, eps (latent) | 10, 0.02, 0.2 | $ITERS, $ALPHA, $EPS |
| adversarial image | JPEG q75 | JPEG q75 |
| PGD (pixels) | L-inf 8/255, step 2/255, 10 iterations | the same |
| tuning | output tokens, Adam lr 2e-3, 20 epochs, batch 32, 4 masks per image | the same |
| seeds | - | $SEEDS (tuning only: the attacks are deterministic) |
| evaluation | box prompts, ASAM protocol | the same on 200 images per set; val is for choices, test for reporting |

No hyper-parameter was chosen on the evaluation sets: the official numbers are used as they are,
changed only where a size differs (above).
EOF

echo "== world"
A world --out "$W" --seed 1 --count 2000 --eval-count 200 --quiet
echo "== PGD images"
A attack-pgd --model "$SAM" --data "sa1b:$W/train" --limit "$N" --out "$OUT/pgd"
GEN="--sd $SD --controlnet $CN --sam $SAM --data sa1b:$W/train --captions $W/train/captions.jsonl --size 128 --steps $SD_STEPS --cfg $CFG --null-steps $NULL_STEPS --iters $ITERS --alpha $ALPHA --eps $EPS"
echo "== ASAM images, skip gradient"
A generate $GEN --grad skip --limit "$N" --out "$OUT/asam_skip"
echo "== ASAM images, full-chain gradient"
A generate $GEN --grad full --limit "$N_FULL" --out "$OUT/asam_full"

data_of() {
    case $1 in
    clean) echo "sa1b:$W/train" ;;
    pgd) echo "adv:$OUT/pgd:$W/train" ;;
    asam_skip) echo "adv:$OUT/asam_skip/adv:$W/train" ;;
    asam_full) echo "adv:$OUT/asam_full/adv:$W/train" ;;
    esac
}
for seed in $SEEDS; do
    for v in clean pgd asam_skip asam_full; do
        echo "== tune $v, seed $seed"
        lim=$N
        [ "$v" = asam_full ] && lim=$N_FULL
        A tune --model "$SAM" --data "$(data_of $v)" --limit "$lim" --seed "$seed" \
            --out "$OUT/tune/$v/seed$seed" --resume --quiet
    done
done

EVAL_DATA=""
for s in $SETS; do EVAL_DATA="$EVAL_DATA --data $s=sa1b:$W/$s"; done
for seed in $SEEDS; do
    [ -f "$OUT/eval/seed$seed.json" ] && continue
    echo "== eval, seed $seed"
    MODELS="--model $SAM"
    for v in clean pgd asam_skip asam_full; do MODELS="$MODELS --model $OUT/tune/$v/seed$seed/sam_tuned.safetensors"; done
    A eval $MODELS $EVAL_DATA --json "$OUT/eval/seed$seed.json" --out "$OUT/eval/seed$seed.md" --quiet
done
if [ ! -f "$OUT/eval/attacks.json" ]; then
    echo "== the untuned model on the attacked training images"
    A eval --model "$SAM" --data "clean=sa1b:$W/train" --data "pgd=adv:$OUT/pgd:$W/train" \
        --data "asam_skip=adv:$OUT/asam_skip/adv:$W/train" --data "asam_full=adv:$OUT/asam_full/adv:$W/train" \
        --limit "$N_FULL" --json "$OUT/eval/attacks.json" --quiet
fi
"$BIN" experiment-report --dir "$OUT" --world "$W" \
    --reproduce "N=$N N_FULL=$N_FULL SEEDS=\"$SEEDS\" SD_STEPS=$SD_STEPS scripts/experiment.sh build/asam $OUT"
