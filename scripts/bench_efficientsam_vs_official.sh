#!/usr/bin/env bash
# EfficientSAM encoder: asam vs the official PyTorch code, measured ALTERNATELY in one run
# (the machine is shared, so only interleaved runs give a fair ratio).
#   scripts/bench_efficientsam_vs_official.sh ASAM_BIN OFFICIAL_DIR [ROUNDS] [THREADS]
# OFFICIAL_DIR holds yformer/EfficientSAM's efficient_sam/ package (not part of asam), e.g.
#   git -C MIRROR archive HEAD efficient_sam | tar -x -C OFFICIAL_DIR
# Needs /usr/bin/python3 with torch. Prints every run, then per variant the medians and ratio.
set -euo pipefail
bin=$1 official=$2 rounds=${3:-3} threads=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=$threads
for v in vit_t vit_s; do
  ours=() theirs=() ours_cpu=() theirs_cpu=()
  for ((r = 0; r < rounds; r++)); do
    line=$("$bin" --threads "$threads" bench efficientsam --variant "$v" --iters 1 --prompts 1 |
      grep "encoder forward")
    echo "asam     $line"
    ours+=("$(awk '{print $4}' <<<"$line")")
    ours_cpu+=("$(grep -o '[0-9.]* CPU-s' <<<"$line" | awk '{print $1}')")
    line=$(/usr/bin/python3 "$here/ref/bench_efficientsam_official.py" "$official" "$v" \
      --threads "$threads")
    echo "official $line"
    theirs+=("$(awk '{print $5}' <<<"$line")")
    theirs_cpu+=("$(grep -o '[0-9.]* CPU-s' <<<"$line" | awk '{print $1}')")
  done
  median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  mo=$(median "${ours[@]}") mt=$(median "${theirs[@]}")
  co=$(median "${ours_cpu[@]}") ct=$(median "${theirs_cpu[@]}")
  awk -v v="$v" -v o="$mo" -v t="$mt" -v co="$co" -v ct="$ct" -v n="$rounds" -v th="$threads" 'BEGIN {
    printf "%s encoder forward, median of %d alternating rounds, %d threads: asam %.2f s (%.2f CPU-s), official PyTorch %.2f s (%.2f CPU-s); official/asam: wall %.2f, CPU %.2f\n", v, n, th, o, co, t, ct, t / o, ct / co }'
done
