#!/usr/bin/env bash
# asam demo --quick: the whole pipeline on the world's trained models (data/world) writes the
# report, its charts and panels, with numbers from the run; a rerun skips the finished stages;
# missing assets give a clear error.
# usage: bash cli_demo.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"
ASAM=$BIN
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
is_jpeg() { [ "$(head -c 3 "$1" | od -An -tx1 | tr -d ' \n')" = "ffd8ff" ]; }

# Small models: one thread avoids OpenMP contention when tests run in parallel.
export OMP_NUM_THREADS=1
for f in sam_mini.safetensors sd/unet/config.json controlnet.safetensors; do
    if [ ! -f "$SRC/data/world/$f" ]; then
        echo "SKIP: $SRC/data/world/$f not found"
        exit 77
    fi
done

start=$(date +%s)
"$ASAM" demo --quick --out "$TMP/d" --assets "$SRC/data" 2>"$TMP/log1"
rc=$?
check "demo --quick exits 0 (took $(($(date +%s) - start)) s)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || tail -20 "$TMP/log1"
R=$TMP/d/report.md
check "report.md written" test -s "$R"
check "report names the trained world models" grep -q "trained from scratch by asam itself" "$R"
check "report says what the numbers cannot show" grep -q "cannot show" "$R"
check "report has the evaluation table (test + six unseen sets)" \
    [ "$(grep -cE '^\| (test|unseen_[a-z_]+) \| 1 \|' "$R")" -eq 7 ]
check "report has the attack table" grep -Eq "^\| sa_1 \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \|" "$R"
for p in sa_1_panel.png heldout_1_panel.png; do
    check "panel $p is a PNG" is_png "$TMP/d/report/$p"
done
for p in attack_iou.svg tune_loss.svg eval_miou.svg; do
    check "chart $p is an SVG with labelled axes" grep -q "</svg>" "$TMP/d/report/$p"
done
# the quality gates come from the installed quality.json (val mIoU printed to 4 digits)
qv=$(tr -d ' \n' <"$SRC/data/world/quality.json" | grep -o '"per_set":{"val":[0-9.]*' | grep -o '[0-9.]*$')
check "report shows the quality gates from quality.json (val $qv)" \
    grep -Eq "^\| SAM-mini box mIoU, val \| $(printf '%.4f' "$qv") \|" "$R"
# the last full experiment is installed with the models: its table and the command that made it
if [ -f "$SRC/data/world/experiment/results.json" ]; then
    check "report shows the experiment's table" grep -Eq "^\| asam_skip \| [0-9.]+ ± [0-9.]+ \|" "$R"
    check "report says what the experiment's table shows" grep -q "Unseen mean against the untuned model" "$R"
    check "report quotes the command that reproduces it" grep -q "scripts/experiment.sh build/asam" "$R"
fi
# the numbers come from the run: the eval table's test row is the eval JSON's
m=$(grep -o '"name": "test".*' "$TMP/d/eval/eval.json" | grep -o '"miou": [0-9.]*' | head -1 | grep -o '[0-9.]*$')
check "the test row's mIoU ($m) is the run's eval.json" \
    grep -q "^| test | 1 | [0-9]* | $(printf '%.4f' "$m") |" "$R"
check "adversarial image written (JPEG q75, as the official script)" is_jpeg "$TMP/d/gen/adv/sa_1.jpg"
check "tuned SAM written" test -s "$TMP/d/tune/sam_tuned.pth"

# Rerun: every stage is skipped.
"$ASAM" demo --quick --out "$TMP/d" --assets "$SRC/data" 2>"$TMP/log2"
check "rerun exits 0" [ $? -eq 0 ]
check "rerun skips generation" grep -q "1 images (1 finished before)" "$TMP/log2"
check "rerun skips tuning" grep -q "tune (output tokens): finished in an earlier run" "$TMP/log2"
check "rerun skips evaluation" grep -q "eval (original vs tuned SAM): finished in an earlier run" "$TMP/log2"

# Other settings in the same folder are refused (finished stages would not match).
"$ASAM" demo --quick --images 2 --out "$TMP/d" --assets "$SRC/data" 2>"$TMP/log4"
check "other settings in the same --out refused" [ $? -ne 0 ]
check "refusal says why" grep -q "was made with other settings" "$TMP/log4"

# Missing assets: non-zero exit, one line naming the path, a report listing the failure.
"$ASAM" demo --quick --out "$TMP/e" --assets "$TMP/nowhere" 2>"$TMP/log3"
check "missing assets: non-zero exit" [ $? -ne 0 ]
check "missing assets: error names the folder" grep -q "$TMP/nowhere/world/sam_mini.safetensors" "$TMP/log3"
check "missing assets: report lists the failed stage" grep -q "| models | failed:" "$TMP/e/report.md"
check "missing assets: later stages not run" grep -q "| tune (output tokens) | not run" "$TMP/e/report.md"

"$ASAM" demo --images 0 2>/dev/null
check "bad --images rejected" [ $? -eq 2 ]
exit $fail
