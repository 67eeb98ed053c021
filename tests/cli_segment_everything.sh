#!/bin/bash
# `asam segment --everything` on a folder with the tiny SAM, then the loop it opens: the output
# folder is an sa1b: dataset that generate (one image, tiny SD, 128 px) and tune accept.
# Resume, refusal on other options (one line, exit 1), --redo, usage errors (exit 2).
# usage: bash cli_segment_everything.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"

PTH=$TMP/model.pth
fixture sam_tiny/model.pth "$PTH"
IN=$TMP/in
OUT=$TMP/out
mkdir -p "$IN"
cp "$SRC/tests/data/images/rgb.png" "$IN/sa_1.png"
cp "$SRC/tests/data/sa1b/sa_1.jpg" "$IN/sa_2.jpg"
# the tiny random SAM needs lowered thresholds (see scripts/ref/make_amg_reference.py)
LOW=(--points-per-side 3 --pred-iou-thresh 0.3 --stability-score-offset 0.25
     --stability-score-thresh 0.45 --box-nms-thresh 1.0)

"$BIN" --threads 2 segment --everything --model "$PTH" --image "$IN" --out "$OUT" "${LOW[@]}" \
    2> "$TMP/log1"
check "segment --everything exits 0" [ $? -eq 0 ]
check "progress with ETA" grep -q "segment: 2/2  sa_2 .*ETA" "$TMP/log1"
for f in sa_1.json sa_2.json sa_1.png sa_2.jpg overlays/sa_1.png overlays/sa_2.png; do
    check "wrote $f" [ -s "$OUT/$f" ]
done
check "SA-1B record fields" grep -q '"segmentation":{"size":\[29,37\],"counts":"' "$OUT/sa_1.json"
for k in bbox area predicted_iou stability_score point_coords crop_box options_hash; do
    check "JSON has $k" grep -q "\"$k\"" "$OUT/sa_1.json"
done
cp "$OUT/sa_1.json" "$TMP/first.json"

"$BIN" segment --everything --model "$PTH" --image "$IN" --out "$OUT" "${LOW[@]}" 2> "$TMP/log2"
check "rerun exits 0" [ $? -eq 0 ]
check "rerun skips both images" grep -q "0 done now, 2 already done" "$TMP/log2"

err=$("$BIN" segment --everything --model "$PTH" --image "$IN" --out "$OUT" "${LOW[@]}" \
    --stability-score-thresh 0.4 2>&1 >/dev/null)
rc=$?
check "other options: exit 1" [ $rc -eq 1 ]
check "other options: one line naming the JSON" \
    bash -c '[ $(printf "%s\n" "$1" | wc -l) -eq 1 ] && [[ "$1" == "asam segment: "*"sa_1.json"*"--redo"* ]]' _ "$err"
check "refused run left the JSON alone" cmp -s "$OUT/sa_1.json" "$TMP/first.json"
"$BIN" segment --everything --model "$PTH" --image "$IN" --out "$OUT" "${LOW[@]}" \
    --stability-score-thresh 0.4 --redo --quiet
check "--redo exits 0" [ $? -eq 0 ]
check "--redo rewrote the JSON" bash -c '! cmp -s "$1" "$2"' _ "$OUT/sa_1.json" "$TMP/first.json"

# usage errors: exit 2
"$BIN" segment --everything --model "$PTH" --image "$IN" 2>/dev/null
check "missing --out: exit 2" [ $? -eq 2 ]
"$BIN" segment --everything --model "$PTH" --image "$IN" --out "$OUT" --points-per-side 0 2>/dev/null
check "--points-per-side 0: exit 2" [ $? -eq 2 ]
"$BIN" segment --everything --model "$TMP/missing.pth" --image "$IN" --out "$TMP/o2" 2>/dev/null
check "missing model: exit 1" [ $? -eq 1 ]

# the loop: tune and generate read the folder as an SA-1B dataset
"$BIN" --threads 2 tune --model "$PTH" --data "sa1b:$OUT" --out "$TMP/tuned" --epochs 1 \
    --batch 2 --no-augment --points 1024 --seed 3 --quiet
check "tune on the generated annotations exits 0" [ $? -eq 0 ]
check "tune wrote sam_tuned.pth" [ -s "$TMP/tuned/sam_tuned.pth" ]
SD=$TMP/sd.ckpt
CN=$TMP/control.pth
if [ -f "$SRC/tests/data/sd_tiny/model.ckpt.gz" ] || [ -f "$SRC/tests/data/sd_tiny/model.ckpt" ]; then
    fixture sd_tiny/model.ckpt "$SD"
    fixture sd_tiny/control.pth "$CN"
    mkdir -p "$TMP/one"
    cp "$OUT/sa_2.jpg" "$OUT/sa_2.json" "$TMP/one/"
    printf '{"img": "sa_2.jpg", "prompt": "a photo"}\n' > "$TMP/caps.jsonl"
    "$BIN" --threads 2 generate --sd "$SD" --controlnet "$CN" --sam "$PTH" \
        --captions "$TMP/caps.jsonl" --size 128 --steps 3 --null-steps 2 --iters 1 \
        --max-boxes 1 --data "sa1b:$TMP/one" --out "$TMP/gen" > "$TMP/gen.log" 2>&1
    check "generate on the generated annotations exits 0" [ $? -eq 0 ]
    check "generate wrote the adversarial image (JPEG q75, as the official)" [ -s "$TMP/gen/adv/sa_2.jpg" ]
    [ $fail -eq 0 ] || cat "$TMP/gen.log"
fi
exit $fail
