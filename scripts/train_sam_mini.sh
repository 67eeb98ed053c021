#!/bin/bash
# Train SAM-mini on the miniature world in chunks, evaluating box-prompt mIoU on val and the six
# unseen sets after each chunk (the run resumes bit-identically from its state file, so the
# chunks change nothing in the trajectory). Usage:
#   [LR_DROP=STEP] [START=STEP] scripts/train_sam_mini.sh ASAM_BIN WORLD_DIR OUT_DIR [FINAL_STEPS] [CHUNK]
# Log: OUT_DIR/log.tsv (step, then the mIoU of each set) and OUT_DIR/train.log (progress lines).
set -e
BIN=$1 W=$2 OUT=$3 FINAL=${4:-8000} CHUNK=${5:-500}
mkdir -p "$OUT"
ARCH="--img-size 128 --embed-dim 128 --depth 4 --heads 4 --window 4 --global-attn 1,3"
OPT="--batch 8 --prompts 4 --point-share 0.5 --lr 5e-4 --warmup 200 --lr-drop ${LR_DROP:-0} --weight-decay 0.01 --seed 1"
SETS="val unseen_texture unseen_palette unseen_lighting unseen_blur_noise unseen_shapes unseen_clutter"
EVALS=""
for s in $SETS; do EVALS="$EVALS --eval sa1b:$W/$s"; done
[ -f "$OUT/log.tsv" ] || echo -e "step\t${SETS// /\\t}" > "$OUT/log.tsv"
step=${START:-$CHUNK} # START: the first chunk end (a resumed run)
while [ "$step" -le "$FINAL" ]; do
    ASAM_PROGRESS_LINES=1 "$BIN" --threads 1 train-sam --data "sa1b:$W/train" --out "$OUT/sam_mini.safetensors" \
        $ARCH $OPT --steps "$step" --save-every 250 --resume $EVALS --eval-images 100 \
        >> "$OUT/eval.log" 2>> "$OUT/train.log"
    row="$step"
    for s in $SETS; do
        row="$row\t$(grep "/$s: box mIoU" "$OUT/eval.log" | tail -1 | sed 's/.*box mIoU \([0-9.]*\).*/\1/')"
    done
    echo -e "$row" >> "$OUT/log.tsv"
    step=$((step + CHUNK))
done
