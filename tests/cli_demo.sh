#!/usr/bin/env bash
# asam demo --quick: the whole pipeline on the tiny models writes the report and its panels;
# a rerun skips the finished stages; missing assets give a clear error.
# usage: bash cli_demo.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"
ASAM=$BIN
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
is_jpeg() { [ "$(head -c 3 "$1" | od -An -tx1 | tr -d ' \n')" = "ffd8ff" ]; }

# Tiny models: one thread avoids OpenMP contention when tests run in parallel.
export OMP_NUM_THREADS=1
for f in sam_tiny/model.pth sd_tiny/model.ckpt sd_tiny/control.pth; do
    if [ ! -f "$SRC/tests/data/$f" ] && [ ! -f "$SRC/tests/data/$f.gz" ]; then
        echo "SKIP: $SRC/tests/data/$f(.gz) not found"
        exit 77
    fi
done

start=$(date +%s)
"$ASAM" demo --quick --out "$TMP/d" --assets "$SRC/tests/data" 2>"$TMP/log1"
rc=$?
check "demo --quick exits 0 (took $(($(date +%s) - start)) s)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || tail -20 "$TMP/log1"
R=$TMP/d/report.md
check "report.md written" test -s "$R"
check "report names the tiny random-weight models" grep -q "tiny random-weight reference models" "$R"
check "report says what the numbers cannot show" grep -q "cannot show" "$R"
check "report has the evaluation table" grep -q "^| held-out images, clean | 1 |" "$R"
check "report has the attack table" grep -Eq "^\| sa_1 \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \|" "$R"
for p in sa_1_panel.png sa_1_iou.png heldout_1_panel.png; do
    check "panel $p is a PNG" is_png "$TMP/d/report/$p"
done
check "adversarial image written (JPEG q75, as the official script)" is_jpeg "$TMP/d/gen/adv/sa_1.jpg"
check "tuned SAM written" test -s "$TMP/d/tune/sam_tuned.pth"

# Rerun: every stage is skipped.
"$ASAM" demo --quick --out "$TMP/d" --assets "$SRC/tests/data" 2>"$TMP/log2"
check "rerun exits 0" [ $? -eq 0 ]
check "rerun skips generation" grep -q "1 images (1 finished before)" "$TMP/log2"
check "rerun skips tuning" grep -q "tune (output tokens): finished in an earlier run" "$TMP/log2"
check "rerun skips evaluation" grep -q "eval (original vs tuned SAM): finished in an earlier run" "$TMP/log2"

# Other settings in the same folder are refused (finished stages would not match).
"$ASAM" demo --quick --images 2 --out "$TMP/d" --assets "$SRC/tests/data" 2>"$TMP/log4"
check "other settings in the same --out refused" [ $? -ne 0 ]
check "refusal says why" grep -q "was made with other settings" "$TMP/log4"

# Missing assets: non-zero exit, one line naming the path, a report listing the failure.
"$ASAM" demo --quick --out "$TMP/e" --assets "$TMP/nowhere" 2>"$TMP/log3"
check "missing assets: non-zero exit" [ $? -ne 0 ]
check "missing assets: error names the folder" grep -q "$TMP/nowhere/sam_tiny/model.pth" "$TMP/log3"
check "missing assets: report lists the failed stage" grep -q "| models | failed:" "$TMP/e/report.md"
check "missing assets: later stages not run" grep -q "| tune (output tokens) | not run" "$TMP/e/report.md"

"$ASAM" demo --images 0 2>/dev/null
check "bad --images rejected" [ $? -eq 2 ]
exit $fail
