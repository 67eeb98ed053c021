#!/bin/bash
# asam segment: a good run writes the mask PNG / overlay / safetensors / JSON, --embedding reuse
# gives the same mask, several boxes give numbered PNGs; bad input prints one line
# "asam segment: ..." and exits non-zero without writing the output.
# usage: bash cli_segment.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"

PTH=$TMP/model.pth
fixture sam_tiny/model.pth "$PTH"
IMG=$SRC/tests/data/sam_tiny/image_a.png
[ -f "$IMG" ] || { echo "SKIP: image_a.png not found"; exit 77; }

# --- a good run (box of fixture case_box_landscape) ---
out=$("$BIN" segment --model "$PTH" --image "$IMG" --box 252.5,105,548,297 --out "$TMP/m.png" \
    --overlay "$TMP/ov.png" --save "$TMP/r.safetensors" --json)
rc=$?
check "good run exits 0" [ $rc -eq 0 ]
check "mask PNG written" [ -s "$TMP/m.png" ]
check "overlay PNG written" [ -s "$TMP/ov.png" ]
check "result safetensors written" [ -s "$TMP/r.safetensors" ]
check "JSON has iou and area" grep -q '"area"' <<<"$out"
check "JSON has the sizes" grep -q '"original_size"' <<<"$out"
info=$("$BIN" inspect "$TMP/r.safetensors" 2>/dev/null)
if [ -n "$info" ]; then
    check "saved image_embedding (1,256,64,64)" grep -q "image_embedding.*1, 256, 64, 64\|image_embedding.*\[1, 256, 64, 64\]" <<<"$info"
    check "saved mask_logits (1,480,640)" grep -q "mask_logits.*1, 480, 640" <<<"$info"
    check "saved low_res_logits (1,256,256)" grep -q "low_res_logits.*1, 256, 256" <<<"$info"
fi

# --- reuse of the saved embedding (no --image) gives the identical mask ---
"$BIN" segment --model "$PTH" --embedding "$TMP/r.safetensors" --box 252.5,105,548,297 --out "$TMP/m2.png" > "$TMP/m2.out"
check "--embedding run exits 0" [ $? -eq 0 ]
check "a success without --json prints one summary line" \
    bash -c '[ $(wc -l < "$1") -eq 1 ] && grep -q "^wrote 1 mask to " "$1"' _ "$TMP/m2.out"
check "--embedding mask identical" cmp -s "$TMP/m.png" "$TMP/m2.png"

# --- several boxes + points + multimask + mask input from the saved result ---
"$BIN" segment --model "$PTH" --embedding "$TMP/r.safetensors" --box 252.5,105,548,297 \
    --box 10,10,200,200 --point 400,200 --point 50,400,0 --multimask --mask-input "$TMP/r.safetensors" \
    --out "$TMP/multi.png" --json > "$TMP/multi.json"
check "two boxes exit 0" [ $? -eq 0 ]
check "numbered PNGs written" [ -s "$TMP/multi_0.png" -a -s "$TMP/multi_1.png" -a ! -e "$TMP/multi.png" ]
check "two masks in JSON" [ "$(grep -c '"prompt"' "$TMP/multi.json")" -eq 2 ]

# --- points only (a padding point is added), written to a single PNG ---
"$BIN" segment --model "$PTH" --embedding "$TMP/r.safetensors" --point 400,200 --point 100,400,0 \
    --out "$TMP/pts.png"
check "points-only run exits 0" [ $? -eq 0 ]
check "points-only PNG written" [ -s "$TMP/pts.png" ]

# --- errors: one line, exit non-zero, no output file ---
expect_error() { # expect_error DESCRIPTION PATTERN ARGS...
    local what=$1 pat=$2
    shift 2
    rm -f "$TMP/bad.png"
    local err
    err=$("$BIN" segment "$@" 2>&1 >/dev/null)
    local rc=$?
    check "$what: exit non-zero" [ $rc -ne 0 ]
    check "$what: one line" [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ]
    check "$what: 'asam segment: ' prefix" grep -q "^asam segment: " <<<"$err"
    check "$what: message ($pat)" grep -q -- "$pat" <<<"$err"
    check "$what: no output file" [ ! -e "$TMP/bad.png" ]
}
expect_error "missing image" "nonexistent.png" --model "$PTH" --image "$TMP/nonexistent.png" \
    --box 1,1,5,5 --out "$TMP/bad.png"
expect_error "missing model" "nomodel.pth" --model "$TMP/nomodel.pth" --image "$IMG" --box 1,1,5,5 \
    --out "$TMP/bad.png"
# prompts partly or wholly outside the image: accepted, as SamPredictor accepts them
check "box partly outside the image is accepted" "$BIN" segment --model "$PTH" --image "$IMG" \
    --box 10,10,700,100 --out "$TMP/outside_box.png"
check "point outside the image is accepted" "$BIN" segment --model "$PTH" --image "$IMG" \
    --point 10,-3 --out "$TMP/outside_pt.png"
check "box wholly outside the image is accepted" "$BIN" segment --model "$PTH" --image "$IMG" \
    --box -50,-40,-10,-5 --out "$TMP/outside_all.png"
expect_error "malformed box" "box" --model "$PTH" --image "$IMG" --box 1,2,x3,4 --out "$TMP/bad.png"
expect_error "box with three numbers" "box" --model "$PTH" --image "$IMG" --box 1,2,3 --out "$TMP/bad.png"
expect_error "bad point label" "label" --model "$PTH" --image "$IMG" --point 1,2,5 --out "$TMP/bad.png"
expect_error "no prompt" "prompt" --model "$PTH" --image "$IMG" --out "$TMP/bad.png"
head -c 3000 "$IMG" > "$TMP/corrupt.png"
expect_error "corrupt image" "corrupt.png" --model "$PTH" --image "$TMP/corrupt.png" --box 1,1,5,5 \
    --out "$TMP/bad.png"
printf 'not a checkpoint at all' > "$TMP/junk.pth"
expect_error "junk checkpoint" "junk.pth" --model "$TMP/junk.pth" --image "$IMG" --box 1,1,5,5 \
    --out "$TMP/bad.png"
SD=$SRC/tests/data/sd_tiny/model.ckpt.gz
if [ -f "$SD" ]; then
    gzip -dc "$SD" > "$TMP/sd.ckpt"
    expect_error "checkpoint of another model" "not a SAM checkpoint" --model "$TMP/sd.ckpt" \
        --image "$IMG" --box 1,1,5,5 --out "$TMP/bad.png"
fi
expect_error "mask input PNG of the wrong size" "256x256" --model "$PTH" --image "$IMG" \
    --mask-input "$IMG" --out "$TMP/bad.png"
expect_error "embedding file without an embedding" "image_embedding" --model "$PTH" \
    --embedding "$PTH" --box 1,1,5,5 --out "$TMP/bad.png"
expect_error "unknown option" "unknown option" --model "$PTH" --image "$IMG" --frobnicate --out "$TMP/bad.png"

"$BIN" segment --help | grep -q "MASK_0.png"
check "--help documents numbered outputs" [ $? -eq 0 ]

exit $fail
