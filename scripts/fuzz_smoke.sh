#!/bin/bash
# Short bounded fuzz run of every libFuzzer harness (fuzz/fuzz_*.c).
# usage: scripts/fuzz_smoke.sh [SECONDS_PER_HARNESS (default 20)] [BUILD_DIR (default build-fuzz)]
# Builds the harnesses with clang (library instrumented too), seeds each one with small valid
# inputs (the tiny SAM checkpoint's data.pkl, a safetensors file and a torch.save file written
# by the project itself) and fails if any harness finds a crash.
set -euo pipefail
SECS=${1:-20}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${2:-$SRC/build-fuzz}
command -v clang >/dev/null || { echo "fuzz_smoke: clang not found" >&2; exit 1; }

CC=clang cmake -S "$SRC" -B "$BUILD" -DASAM_FUZZ=ON -DASAM_NATIVE=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" >/dev/null
cmake --build "$BUILD" -j2 --target fuzz_pickle fuzz_safetensors fuzz_rle fuzz_sa1b_json >/dev/null

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/pickle" "$WORK/safetensors" "$WORK/rle" "$WORK/sa1b_json"

# Seeds. The tiny SAM model: its data.pkl (pulled out of the zip with the stored-entry layout:
# local header of 30 bytes + name + extra) and the whole file is too big to be a useful seed.
PTH="$WORK/model.pth"
if [ -f "$SRC/tests/data/sam_tiny/model.pth.gz" ]; then
    gzip -dc "$SRC/tests/data/sam_tiny/model.pth.gz" > "$PTH"
    python3 - "$PTH" "$WORK/pickle/sam.pkl" <<'EOF' 2>/dev/null || true
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
open(sys.argv[2], "wb").write(z.read([n for n in z.namelist() if n.endswith("data.pkl")][0]))
EOF
fi
printf '\x80\x02}q\x00(X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x10tQK\x00K\x04K\x04\x86K\x04K\x01\x86\x89ccollections\nOrderedDict\n)Rtq\x05Ru.' > "$WORK/pickle/small.pkl"
# safetensors seed: one F32 tensor of 2 values with metadata
hdr='{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
while [ $(( ${#hdr} % 8 )) -ne 0 ]; do hdr="$hdr "; done
{
    printf "$(printf '\\x%02x' $(( ${#hdr} )) 0 0 0 0 0 0 0)"
    printf '%s' "$hdr"
    printf '\x00\x00\x80\x3f\x00\x00\x00\x40'
} > "$WORK/safetensors/a.safetensors"
cp "$WORK/pickle/small.pkl" "$WORK/safetensors/" # not a checkpoint: exercises detection

# RLE and SA-1B JSON seeds: the test sample annotation file.
cp "$SRC/tests/data/sa1b/sa_1.json" "$WORK/sa1b_json/"
printf 'hW0>1O2N3M' > "$WORK/rle/a"

status=0
for h in pickle safetensors rle sa1b_json; do
    echo "== fuzz_$h for ${SECS}s"
    if ! "$BUILD/fuzz_$h" "$WORK/$h" -max_total_time="$SECS" -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$WORK/crash-$h-" >"$WORK/$h.log" 2>&1; then
        echo "fuzz_$h FAILED:"
        tail -40 "$WORK/$h.log"
        mkdir -p "$SRC/fuzz/artifacts"
        cp "$WORK"/crash-$h-* "$SRC/fuzz/artifacts/" 2>/dev/null || true
        status=1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$WORK/$h.log" || true
done
exit $status
