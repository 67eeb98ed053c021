#!/usr/bin/env bash
# Segment everything, seconds per image: asam (C) against the official PyTorch
# SamAutomaticMaskGenerator on the same random ViT-B weights and image, run alternately
# (C, PyTorch, C, PyTorch, ...) so both see the same machine load. Official defaults.
#
#   scripts/bench_amg.sh ASAM_BINARY SAM_REPO IMAGE [ROUNDS] [THREADS]
#     SAM_REPO: a segment-anything checkout (parent of segment_anything/)
#     PYTHONPATH must reach torchvision (e.g. Debian's python3-torchvision unpacked).
set -euo pipefail
ASAM=$1 SAM_REPO=$2 IMAGE=$3 ROUNDS=${4:-2} THREADS=${5:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
MODEL=$TMP/vit_b_random.pth
"$ASAM" bench amg --image "$IMAGE" --seed 1 --write-model "$MODEL" --iters 0
for r in $(seq "$ROUNDS"); do
    echo "round $r: asam"
    OMP_NUM_THREADS=$THREADS "$ASAM" --threads "$THREADS" bench amg --model "$MODEL" \
        --image "$IMAGE" --iters 1
    echo "round $r: official PyTorch"
    OMP_NUM_THREADS=$THREADS /usr/bin/python3 "$HERE/ref/bench_amg_official.py" \
        --sam-repo "$SAM_REPO" --checkpoint "$MODEL" --image "$IMAGE" --runs 1
done
