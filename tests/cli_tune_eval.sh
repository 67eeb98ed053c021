#!/bin/bash
# attack-pgd -> tune -> eval end to end on a small SA-1B folder with the tiny SAM; the table is
# written; bad inputs print one line "asam <cmd>: ..." and exit non-zero.
# usage: bash cli_tune_eval.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"

PTH=$TMP/model.pth
fixture sam_tiny/model.pth "$PTH"
[ -f "$SRC/tests/data/sa1b/sa_1.json" ] || { echo "SKIP: tests/data/sa1b missing"; exit 77; }

# a two-image SA-1B folder: the fixture image (3 masks) and a copy under another name
D=$TMP/sa1b
mkdir -p "$D"
cp "$SRC/tests/data/sa1b/sa_1.jpg" "$SRC/tests/data/sa1b/sa_1.json" "$D/"
cp "$D/sa_1.jpg" "$D/sa_2.jpg"
sed 's/"image_id": 1/"image_id": 2/; s/sa_1.jpg/sa_2.jpg/' "$D/sa_1.json" > "$D/sa_2.json"

# --- PGD baseline dataset ---
"$BIN" attack-pgd --model "$PTH" --data "sa1b:$D" --out "$TMP/adv" --iters 1 --quiet
check "attack-pgd exits 0" [ $? -eq 0 ]
check "adversarial PNGs written" [ -s "$TMP/adv/sa_1.png" -a -s "$TMP/adv/sa_2.png" ]
check "attack-pgd records its provenance" grep -q '"--iters":"1"' "$TMP/adv/provenance.json"
# a rerun with the same options reuses the images; other options are refused naming the
# option, or redo every image with --force
"$BIN" attack-pgd --model "$PTH" --data "sa1b:$D" --out "$TMP/adv" --iters 1 --quiet
check "attack-pgd rerun, same options: exits 0" [ $? -eq 0 ]
err=$("$BIN" attack-pgd --model "$PTH" --data "sa1b:$D" --out "$TMP/adv" --iters 2 --quiet 2>&1)
rc=$?
check "attack-pgd, other --iters: refused" [ $rc -ne 0 ]
check "attack-pgd, other --iters: one line naming --iters" \
    bash -c '[ $(printf "%s\n" "$1" | wc -l) -eq 1 ] && [[ "$1" == "asam attack-pgd: "*"--iters"* ]]' _ "$err"
cp "$TMP/adv/sa_1.png" "$TMP/adv_iters1.png"
"$BIN" attack-pgd --model "$PTH" --data "sa1b:$D" --out "$TMP/adv" --iters 2 --force --quiet
check "attack-pgd --force: exits 0" [ $? -eq 0 ]
check "attack-pgd --force: provenance rewritten" grep -q '"--iters":"2"' "$TMP/adv/provenance.json"
check "attack-pgd --force: image redone" bash -c '! cmp -s "$1" "$2"' _ "$TMP/adv_iters1.png" \
    "$TMP/adv/sa_1.png"

# --- tuning on the adversarial images with the original annotations ---
"$BIN" tune --model "$PTH" --data "adv:$TMP/adv:$D" --out "$TMP/tuned" --epochs 2 --batch 2 \
    --no-augment --points 1024 --seed 3 2> "$TMP/tune.log"
rc=$?
check "tune exits 0" [ $rc -eq 0 ]
check "tune shows progress" grep -q "epoch 2/20\|epoch 2/2" "$TMP/tune.log"
for f in sam_tuned.pth sam_tuned.safetensors decoder_tokens.safetensors state.safetensors; do
    check "tune wrote $f" [ -s "$TMP/tuned/$f" ]
done
info=$("$BIN" inspect "$TMP/tuned/sam_tuned.pth" 2>/dev/null)
if [ -n "$info" ]; then
    check "tuned pth has the decoder tokens" grep -q "mask_decoder.mask_tokens.weight" <<<"$info"
fi

# --- evaluation table: original vs tuned ---
"$BIN" eval --model "$PTH" --model "$TMP/tuned/sam_tuned.pth" --data "synthetic=sa1b:$D" \
    --data "adv=adv:$TMP/adv:$D" --limit 1 --out "$TMP/table.md" --json "$TMP/table.json" \
    > "$TMP/eval.out" 2> "$TMP/eval.log"
check "eval exits 0" [ $? -eq 0 ]
check "markdown table written" grep -q "| synthetic | 1 | 3 |" "$TMP/table.md"
check "table compares both models" grep -q "sam_tuned.pth mIoU" "$TMP/table.md"
check "json table written" grep -q '"miou"' "$TMP/table.json"
check "table printed on stdout" grep -q "| adv | 1 | 3 |" "$TMP/eval.out"
cat "$TMP/table.md"
"$BIN" eval --baseline "$PTH" --model "$PTH" --data "sa1b:$D" --limit 1 --quiet > "$TMP/eval_bl.out"
check "eval --baseline (one-step path) beside --model (two-step)" grep -q "model.pth mIoU" "$TMP/eval_bl.out"
"$BIN" eval --model "$PTH" --data "sa1b:$D" --protocol sam --limit 1 --quiet > "$TMP/eval_sam.out"
check "eval --protocol sam exits 0" [ $? -eq 0 ]

# --- bad inputs: one line, non-zero exit, no output file ---
expect_error() { # expect_error DESCRIPTION NEEDLE CMD ARGS...
    local what=$1 needle=$2
    shift 2
    local cmd=$1
    err=$("$BIN" "$@" 2>&1 >/dev/null)
    rc=$?
    check "$what: non-zero exit" [ $rc -ne 0 ]
    check "$what: one line 'asam $cmd: ...' naming '$needle'" \
        bash -c '[ $(printf "%s\n" "$1" | wc -l) -eq 1 ] && [[ "$1" == "asam $2: "* ]] && [[ "$1" == *"$3"* ]]' \
        _ "$err" "$cmd" "$needle"
}
expect_error "eval missing model" "/nonexistent/sam.pth" eval --model /nonexistent/sam.pth \
    --data "sa1b:$D" --out "$TMP/bad.md"
check "eval missing model: no table" [ ! -e "$TMP/bad.md" ]
expect_error "eval missing dataset" "/nonexistent/dir" eval --model "$PTH" \
    --data "x=sa1b:/nonexistent/dir"
expect_error "eval bad protocol" "protocol" eval --model "$PTH" --data "sa1b:$D" --protocol foo
expect_error "tune bad dataset kind" "unknown dataset kind" tune --model "$PTH" \
    --data "voc:$D" --out "$TMP/t2"
expect_error "tune bad loss" "--loss" tune --model "$PTH" --data "sa1b:$D" --out "$TMP/t2" \
    --loss dice
expect_error "tune missing --out" "required" tune --model "$PTH" --data "sa1b:$D"
expect_error "tune bad model" "not_a_model" tune --model "$TMP/not_a_model.pth" \
    --data "sa1b:$D" --out "$TMP/t3"
# fewer images than one batch of the official 32: no Adam step would run, so it is refused
expect_error "tune with no full batch" "no full batch of 32" tune --model "$PTH" \
    --data "sa1b:$D" --out "$TMP/t4"
check "tune with no full batch: no tuned checkpoint" [ ! -e "$TMP/t4/sam_tuned.pth" ]
expect_error "attack-pgd bad eps" "--eps" attack-pgd --model "$PTH" --data "sa1b:$D" \
    --out "$TMP/adv2" --eps 8/0
echo '{"image": {' > "$TMP/badjson.json"
mkdir -p "$TMP/bad"
cp "$D/sa_1.jpg" "$TMP/bad/"
cp "$TMP/badjson.json" "$TMP/bad/sa_1.json"
expect_error "attack-pgd corrupt json" "sa_1.json" attack-pgd --model "$PTH" \
    --data "sa1b:$TMP/bad" --out "$TMP/adv3" --quiet
check "attack-pgd corrupt json: no image written" [ ! -e "$TMP/adv3/sa_1.png" ]

exit $fail
