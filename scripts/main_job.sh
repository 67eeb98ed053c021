#!/usr/bin/env bash
# The main job: `asam demo` — generate -> tune -> eval on scenes of the miniature world with
# the world's trained models (data/world, installed as share/asam/models/world); report in
# OUT_DIR/demo/report.md.
# Usage: scripts/main_job.sh ASAM_BINARY OUT_DIR
set -euo pipefail
ASAM=$(realpath "$1")
OUT=$2
mkdir -p "$OUT"
"$ASAM" demo --out "$OUT/demo"
echo "report: $OUT/demo/report.md"
