#!/bin/bash
# Retrain every model of the miniature world from scratch (issue 9) and write them as committed
# in data/world (F16): SAM-mini on one core while the Stable Diffusion side (VAE-mini, then
# UNet-mini with the frozen CLIP-mini, then the mask ControlNet) trains on the other. Every
# command resumes from its state file, so rerunning the same line after a kill loses at most a
# few steps; a finished stage is skipped.
#
#   scripts/train_world.sh ASAM_BIN WORK_DIR [OUT_DIR=data/world]
#
# SD_COUNT / SAM_COUNT / EVAL_COUNT (scenes) and SAM_STEPS / VAE_STEPS / UNET_STEPS / CN_STEPS
# override the committed run's numbers (for a quick smoke run; the defaults are those numbers).
#
# tests/cli_train_world.sh runs it with tiny counts (every file, the committed shapes). The full
# run has not been run as this one command yet: its stages ran as the separate commands of
# data/world/README.md (same options) on 3 December 2026.
# Measured on the 2-core machine of 3 December 2026 (load 6-10 from other jobs, so an idle
# machine is faster): SAM-mini about 42 min, VAE-mini 27 min, UNet-mini 22 min, ControlNet 14 min;
# the two chains in parallel take about an hour. The numbers each model reached are in
# data/world/README.md and docs/world.md.
set -euo pipefail
BIN=$(realpath "$1")
WORK=$2
OUT=${3:-$(cd "$(dirname "$0")/.." && pwd)/data/world}
mkdir -p "$WORK" "$OUT"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
A() { "$BIN" --threads 1 "$@"; }
SD_COUNT=${SD_COUNT:-2000} SAM_COUNT=${SAM_COUNT:-10000} EVAL_COUNT=${EVAL_COUNT:-200}
SAM_STEPS=${SAM_STEPS:-6000} VAE_STEPS=${VAE_STEPS:-1900} UNET_STEPS=${UNET_STEPS:-2400}
CN_STEPS=${CN_STEPS:-1000}

# The scenes: 2,000 training scenes for the SD side, 10,000 for SAM-mini (the first 2,000 of
# which are the same scenes: every scene is a pure function of seed, set and index).
A world --out "$WORK/world" --seed 1 --count "$SD_COUNT" --eval-count "$EVAL_COUNT" --quiet
A world --out "$WORK/world_sam" --seed 1 --count "$SAM_COUNT" --eval-count "$EVAL_COUNT" --quiet

sam_chain() {
    A train-sam --data "sa1b:$WORK/world_sam/train" --out "$WORK/sam_mini.safetensors" \
        --img-size 128 --embed-dim 128 --depth 4 --heads 4 --window 4 --global-attn 1,3 \
        --batch 8 --prompts 4 --point-share 0.5 --lr 5e-4 --warmup 200 --lr-drop 4500 \
        --weight-decay 0.01 --seed 1 --steps "$SAM_STEPS" --save-every 250 --resume \
        --eval "sa1b:$WORK/world/val" --eval "sa1b:$WORK/world/test"
    A convert "$WORK/sam_mini.safetensors" "$OUT/sam_mini.safetensors" --dtype f16
}

sd_chain() {
    local SD=$WORK/sd
    A train-vae --data "sa1b:$WORK/world/train" --out "$SD" --crop 64 --batch 4 --lr 5e-4 \
        --warmup 100 --steps "$VAE_STEPS" --seed 1 --resume --eval "sa1b:$WORK/world/val"
    A train-unet --data "sa1b:$WORK/world/train" --out "$SD" --batch 16 --lr 3e-4 \
        --warmup 200 --steps "$UNET_STEPS" --seed 1 --resume
    A train-controlnet --sd "$SD" --data "sa1b:$WORK/world/train" \
        --out "$WORK/controlnet.safetensors" --size 128 --batch 4 --lr 2e-4 --steps "$CN_STEPS" \
        --seed 1 --resume
    # F16 copies in the committed layout: the diffusers folder's config and tokenizer files as
    # they are, every weight file converted
    (cd "$SD" && find . -type f ! -name '*.safetensors' ! -name '*.json.tmp*' ! -name '*.eval.json' -print0) |
        while IFS= read -r -d '' f; do mkdir -p "$OUT/sd/$(dirname "$f")"; cp "$SD/$f" "$OUT/sd/$f"; done
    for f in vae/diffusion_pytorch_model unet/diffusion_pytorch_model text_encoder/model; do
        A convert "$SD/$f.safetensors" "$OUT/sd/$f.safetensors" --dtype f16
    done
    A convert "$WORK/controlnet.safetensors" "$OUT/controlnet.safetensors" --dtype f16
}

sam_chain > "$WORK/sam.log" 2>&1 &
sam_pid=$!
sd_chain > "$WORK/sd.log" 2>&1
wait $sam_pid
echo "train_world: models written to $OUT (logs: $WORK/sam.log, $WORK/sd.log)"
