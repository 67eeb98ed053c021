#!/bin/bash
# MPI, data-parallel commands on 2 ranks against 1 rank, tiny models: tune and train-controlnet
# with the same global batch give bit-identical weights and state (the per-sample gradients are
# summed in double, so how the batch is split does not change them); a run stopped on 2 ranks
# and resumed on 1 gives the uninterrupted result; eval prints the same table and writes the
# same files; attack-pgd writes the same images. Skipped (77) without MPI ($ASAM_MPIEXEC, set
# by CMake when the build has MPI).
# usage: bash cli_mpi_train.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"

[ -n "${ASAM_MPIEXEC:-}" ] || { echo "SKIP: this build has no MPI"; exit 77; }
PTH=$TMP/model.pth
SD=$TMP/sd.ckpt
fixture sam_tiny/model.pth "$PTH"
fixture sd_tiny/model.ckpt "$SD"
[ -f "$SRC/tests/data/sa1b/sa_1.json" ] || { echo "SKIP: tests/data/sa1b missing"; exit 77; }
export OMP_NUM_THREADS=1
# (LeakSanitizer cannot tell the Open MPI runtime's allocations kept until exit from asam's:
# off in sanitizer builds; the single-process tests leak-check the same code)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
run1() { "$BIN" "$@"; }
run2() { "$ASAM_MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$BIN" "$@"; }
same_files() { # same_files DIR_A DIR_B FILE...: every FILE is byte-identical in both
    local a=$1 b=$2 f
    shift 2
    for f in "$@"; do cmp -s "$a/$f" "$b/$f" || { echo "differs: $f"; return 1; }; done
}

# three SA-1B images (the fixture under three ids), captions for the ControlNet
D=$TMP/sa1b
mkdir -p "$D"
for n in 1 2 3; do
    cp "$SRC/tests/data/sa1b/sa_1.jpg" "$D/sa_$n.jpg"
    sed "s/\"image_id\": 1/\"image_id\": $n/; s/sa_1.jpg/sa_$n.jpg/" \
        "$SRC/tests/data/sa1b/sa_1.json" > "$D/sa_$n.json"
done
printf '{"img": "sa_2.jpg", "prompt": "a red square"}\n' > "$D/captions.jsonl"

# --- tune: global batch 3 (rank 0 takes 1 image, rank 1 takes 2); the runs share one
# embedding cache (keyed by the encoder weights), so only the first one runs the encoder ---
TOPTS=(--model "$PTH" --data "sa1b:$D" --epochs 2 --batch 3 --points 1024 --seed 3 --quiet
    --cache "$TMP/cache")
run1 tune "${TOPTS[@]}" --no-augment --out "$TMP/t1" 2> "$TMP/t1.log"
check "tune, 1 rank" [ $? -eq 0 ]
run2 tune "${TOPTS[@]}" --no-augment --out "$TMP/t2" 2> "$TMP/t2.log"
check "tune, 2 ranks" [ $? -eq 0 ]
check "tune: 2 ranks give the same tokens, model and state as 1 rank" same_files "$TMP/t1" \
    "$TMP/t2" decoder_tokens.safetensors sam_tuned.safetensors sam_tuned.pth state.safetensors
run2 tune "${TOPTS[@]}" --no-augment --out "$TMP/t3" --stop-after 1 2> "$TMP/t3.log" &&
    run1 tune "${TOPTS[@]}" --no-augment --out "$TMP/t3" --resume 2>> "$TMP/t3.log"
check "tune: stopped on 2 ranks, resumed on 1 = uninterrupted" same_files "$TMP/t1" "$TMP/t3" \
    decoder_tokens.safetensors state.safetensors
# with augmentation (encoder per image, random flip / jitter drawn per image), 2 images
run1 tune "${TOPTS[@]}" --epochs 1 --batch 2 --limit 2 --out "$TMP/ta1" 2> "$TMP/ta1.log" &&
    run2 tune "${TOPTS[@]}" --epochs 1 --batch 2 --limit 2 --out "$TMP/ta2" 2> "$TMP/ta2.log"
check "tune with augmentation: 2 ranks = 1 rank" same_files "$TMP/ta1" "$TMP/ta2" \
    decoder_tokens.safetensors state.safetensors

# --- train-controlnet: global batch 3, 64 px, 2 steps; then 2 more resumed on the other N ---
COPTS=(--sd "$SD" --data "sa1b:$D" --size 64 --batch 3 --seed 5 --lr 1e-4 --quiet)
run1 train-controlnet "${COPTS[@]}" --steps 4 --out "$TMP/c1.safetensors" 2> "$TMP/c1.log"
check "train-controlnet, 1 rank" [ $? -eq 0 ]
run2 train-controlnet "${COPTS[@]}" --steps 4 --out "$TMP/c2.safetensors" 2> "$TMP/c2.log"
check "train-controlnet, 2 ranks" [ $? -eq 0 ]
check "train-controlnet: 2 ranks give the same weights and state as 1 rank" \
    cmp -s "$TMP/c1.safetensors" "$TMP/c2.safetensors"
check "train-controlnet: same resume state" \
    cmp -s "$TMP/c1.safetensors.state.safetensors" "$TMP/c2.safetensors.state.safetensors"
run2 train-controlnet "${COPTS[@]}" --steps 2 --out "$TMP/c3.safetensors" 2> "$TMP/c3.log" &&
    run1 train-controlnet "${COPTS[@]}" --steps 4 --resume --out "$TMP/c3.safetensors" \
        2>> "$TMP/c3.log"
check "train-controlnet: 2 steps on 2 ranks, resumed to 4 on 1 = uninterrupted" \
    cmp -s "$TMP/c1.safetensors" "$TMP/c3.safetensors"

# --- attack-pgd and eval: the images split over the ranks, one table ---
run1 attack-pgd --model "$PTH" --data "sa1b:$D" --out "$TMP/adv1" --iters 1 --limit 2 --quiet &&
    run2 attack-pgd --model "$PTH" --data "sa1b:$D" --out "$TMP/adv2" --iters 1 --limit 2 --quiet
check "attack-pgd: 2 ranks write the same images" same_files "$TMP/adv1" "$TMP/adv2" \
    sa_1.png sa_2.png
EOPTS=(--model "$PTH" --model "$TMP/t1/sam_tuned.pth" --data "clean=sa1b:$D"
    --data "adv=adv:$TMP/adv1:$D" --limit 2 --quiet)
run1 eval "${EOPTS[@]}" --out "$TMP/e1.md" --json "$TMP/e1.json" > "$TMP/e1.out" 2> "$TMP/e1.log"
check "eval, 1 rank" [ $? -eq 0 ]
run2 eval "${EOPTS[@]}" --out "$TMP/e2.md" --json "$TMP/e2.json" > "$TMP/e2.out" 2> "$TMP/e2.log"
check "eval, 2 ranks" [ $? -eq 0 ]
check "eval: the same table printed once" cmp -s "$TMP/e1.out" "$TMP/e2.out"
check "eval: the same Markdown and JSON files" \
    bash -c "cmp -s '$TMP/e1.md' '$TMP/e2.md' && cmp -s '$TMP/e1.json' '$TMP/e2.json'"
cat "$TMP/e2.out"

# --- a failure on the ranks: one error line per rank, non-zero exit, no hang ---
run2 eval --model "$TMP/missing.pth" --data "sa1b:$D" > /dev/null 2> "$TMP/err.log"
rc=$?
check "eval with a missing model on 2 ranks exits non-zero" [ $rc -ne 0 ]
check "the error names the file" grep -q "missing.pth" "$TMP/err.log"

[ $fail -ne 0 ] && for f in "$TMP"/*.log; do echo "== $f"; tail -5 "$f"; done
exit $fail
