#!/bin/bash
# MPI generate on the tiny models (64 px, 2 DDIM steps, 4 images): 2 ranks write the same files
# as 1 rank, with one progress line per image and one summary (rank 0); a rank killed (SIGKILL)
# mid-job, then a rerun on another number of ranks, ends with exactly the files of the clean
# run and redoes no finished image. Skipped (77) without MPI ($ASAM_MPIEXEC, set by CMake when
# the build has MPI).
# usage: bash cli_mpi_generate.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"

[ -n "${ASAM_MPIEXEC:-}" ] || { echo "SKIP: this build has no MPI"; exit 77; }
SD=$TMP/sd.ckpt
CN=$TMP/control.pth
SAM=$TMP/sam.pth
fixture sd_tiny/model.ckpt "$SD"
fixture sd_tiny/control.pth "$CN"
fixture sam_tiny/model.pth "$SAM"
[ -f "$SRC/tests/data/sa1b/sa_1.json" ] || { echo "SKIP: tests/data/sa1b missing"; exit 77; }
export OMP_NUM_THREADS=1
# (LeakSanitizer cannot tell the Open MPI runtime's allocations kept until exit from asam's:
# off in sanitizer builds; the single-process tests leak-check the same code)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
mpi() { "$ASAM_MPIEXEC" --allow-run-as-root --oversubscribe -np "$@"; }

D=$TMP/data
mkdir -p "$D"
for n in 1 2 3 4; do
    cp "$SRC/tests/data/sa1b/sa_1.jpg" "$D/sa_$n.jpg"
    cp "$SRC/tests/data/sa1b/sa_1.json" "$D/sa_$n.json"
done
OPTS=(generate --sd "$SD" --controlnet "$CN" --sam "$SAM" --size 64 --steps 2 --null-steps 2
    --iters 1 --max-boxes 2 --data "sa1b:$D")
same_tree() { # same_tree A B: the same file names and contents
    [ "$(cd "$1" && find . -type f | sort)" = "$(cd "$2" && find . -type f | sort)" ] ||
        { echo "file lists differ"; diff <(cd "$1" && find . -type f | sort) \
            <(cd "$2" && find . -type f | sort); return 1; }
    local f
    for f in $(cd "$1" && find . -type f); do
        cmp -s "$1/$f" "$2/$f" || { echo "differs: $f"; return 1; }
    done
}

"$BIN" "${OPTS[@]}" --out "$TMP/one" > /dev/null 2> "$TMP/one.log"
check "generate, 1 rank" [ $? -eq 0 ]
mpi 2 "$BIN" "${OPTS[@]}" --out "$TMP/two" > /dev/null 2> "$TMP/two.log"
check "generate, 2 ranks" [ $? -eq 0 ]
check "2 ranks write the same files as 1 rank" same_tree "$TMP/one" "$TMP/two"
check "one progress line per image, with ETA, from rank 0" \
    [ "$(grep -c '^generate: [1-4]/4 .*ETA' "$TMP/two.log")" -eq 4 ]
check "both ranks did images" bash -c "grep -q '(rank 0)' '$TMP/two.log' && grep -q '(rank 1)' '$TMP/two.log'"
check "one summary line" [ "$(grep -c 'mean IoU' "$TMP/two.log")" -eq 1 ]

# kill rank 1 with SIGKILL once the first image is finished, then rerun on 3 ranks
"$ASAM_MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$BIN" "${OPTS[@]}" --out "$TMP/kill" \
    > /dev/null 2> "$TMP/kill.log" &
launcher=$! # (started directly, not through a function: its children are the ranks)
for _ in $(seq 1 600); do
    [ -n "$(ls "$TMP/kill/adv/"*.attack.json 2> /dev/null)" ] && break
    kill -0 $launcher 2> /dev/null || break
    sleep 0.1
done
victim=""
for p in $(pgrep -P $launcher); do # the ranks are the launcher's children
    if tr '\0' '\n' < /proc/$p/environ 2> /dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then
        victim=$p
    fi
done
[ -n "$victim" ] && kill -9 "$victim"
wait $launcher
rc=$?
check "the job ends when a rank is killed (exit $rc)" [ -n "$victim" -a $rc -ne 0 ]
left=$(( 4 - $(ls "$TMP/kill/adv/"*.attack.json 2> /dev/null | wc -l) ))
check "the kill left work undone ($left images)" [ $left -gt 0 ]
mpi 3 "$BIN" "${OPTS[@]}" --out "$TMP/kill" > /dev/null 2> "$TMP/rerun.log"
check "rerun on 3 ranks" [ $? -eq 0 ]
check "killed + rerun = the clean run's files, no leftovers" same_tree "$TMP/one" "$TMP/kill"
check "the rerun did only the unfinished images ($left)" \
    [ "$(grep -c '^generate: [1-4]/4 ' "$TMP/rerun.log")" -eq $left ]

[ $fail -ne 0 ] && for f in "$TMP"/*.log; do echo "== $f"; tail -8 "$f"; done
exit $fail
