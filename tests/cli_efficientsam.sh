#!/bin/bash
# The CLI with an EfficientSAM checkpoint (tiny model, family read from the file):
# segment (box, points with labels, several boxes, multimask, --save, --json, --overlay,
# --embedding reuse), inspect naming the family, tune (EASAM) writing efficientsam_tuned.pt,
# eval beside a SAM checkpoint, bench efficientsam on the file; bad input prints one line
# "asam <cmd>: ..." and exits non-zero without writing the output.
# usage: bash cli_efficientsam.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"

M=$TMP/esam.safetensors
fixture efficientsam_tiny/model.safetensors "$M"
SAM=$TMP/sam.pth
fixture sam_tiny/model.pth "$SAM"
IMG=$SRC/tests/data/sam_tiny/image_a.png
[ -f "$IMG" ] || { echo "SKIP: image_a.png not found"; exit 77; }

# --- segment: a box ---
out=$("$BIN" segment --model "$M" --image "$IMG" --box 252.5,105,548,297 --out "$TMP/m.png" \
    --overlay "$TMP/ov.png" --save "$TMP/r.safetensors" --json)
check "box run exits 0" [ $? -eq 0 ]
check "mask PNG written" [ -s "$TMP/m.png" ]
check "overlay PNG written" [ -s "$TMP/ov.png" ]
check "JSON names the family" grep -q '"family":.*"efficientsam"' <<<"$out"
check "JSON has iou and area" grep -q '"area"' <<<"$out"
info=$("$BIN" inspect "$TMP/r.safetensors")
check "saved image_embedding (1,64,64,64)" grep -q "image_embedding.*1, 64, 64, 64" <<<"$info"
check "saved mask_logits (1,480,640)" grep -q "mask_logits.*1, 480, 640" <<<"$info"
"$BIN" segment --model "$M" --embedding "$TMP/r.safetensors" --box 252.5,105,548,297 \
    --out "$TMP/m2.png"
check "--embedding run exits 0" [ $? -eq 0 ]
check "--embedding mask identical" cmp -s "$TMP/m.png" "$TMP/m2.png"

# --- points with labels, two boxes, multimask ---
"$BIN" segment --model "$M" --embedding "$TMP/r.safetensors" --box 252.5,105,548,297 \
    --box 10,10,200,200 --point 400,200 --point 50,400,0 --multimask --out "$TMP/multi.png" \
    --json > "$TMP/multi.json"
check "two boxes + points exit 0" [ $? -eq 0 ]
check "numbered PNGs written" [ -s "$TMP/multi_0.png" -a -s "$TMP/multi_1.png" ]
check "two masks with 3 IoUs each" [ "$(grep -c '"prompt"' "$TMP/multi.json")" -eq 2 ]
"$BIN" segment --model "$M" --image "$IMG" --point 400,200 --point 100,400,0 --out "$TMP/p.png"
check "points-only run exits 0" [ $? -eq 0 -a -s "$TMP/p.png" ]

# --- errors ---
expect_error() { # expect_error CMD DESCRIPTION PATTERN EXPECTED_RC ARGS...
    local cmd=$1 what=$2 pat=$3 want=$4
    shift 4
    rm -f "$TMP/bad.png"
    local err rc
    err=$("$BIN" "$cmd" "$@" 2>&1 >/dev/null)
    rc=$?
    check "$what: exit $want" [ $rc -eq "$want" ]
    check "$what: one line" [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ]
    check "$what: names the problem" grep -q "$pat" <<<"$err"
    check "$what: no output file" [ ! -e "$TMP/bad.png" ]
}
expect_error segment "mask input" "no --mask-input" 2 --model "$M" --image "$IMG" \
    --box 1,1,50,50 --mask-input "$TMP/r.safetensors" --out "$TMP/bad.png"
expect_error segment "7 points" "at most 6 prompt points" 1 --model "$M" --image "$IMG" \
    --box 1,1,50,50 --point 1,1 --point 2,2 --point 3,3 --point 4,4 --point 5,5 \
    --out "$TMP/bad.png"
head -c 300000 "$M" > "$TMP/trunc.safetensors"
expect_error segment "truncated model" "trunc.safetensors" 1 --model "$TMP/trunc.safetensors" \
    --image "$IMG" --box 1,1,50,50 --out "$TMP/bad.png"

# --- tune (EASAM) and eval beside SAM ---
DATA=sa1b:$SRC/tests/data/sa1b
"$BIN" tune --model "$M" --data "$DATA" --out "$TMP/tune" --epochs 1 --no-augment --limit 1 --batch 1 \
    --masks-per-image 2 --points 1024 --quiet
check "tune exits 0" [ $? -eq 0 ]
check "efficientsam_tuned.pt written" [ -s "$TMP/tune/efficientsam_tuned.pt" ]
"$BIN" eval --model "$SAM" --model "$TMP/tune/efficientsam_tuned.safetensors" \
    --data sa1=$DATA --limit 1 --out "$TMP/eval.md" --quiet
check "eval exits 0" [ $? -eq 0 ]
check "eval table has both models" grep -q "efficientsam_tuned" "$TMP/eval.md"

# --- bench on the file ---
b=$("$BIN" bench efficientsam --model "$M" --iters 1 --prompts 1)
check "bench prints the encoder row" grep -q "encoder forward" <<<"$b"
exit $fail
