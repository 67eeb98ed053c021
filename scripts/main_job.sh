#!/usr/bin/env bash
# The main job: `asam demo` (generate -> tune -> eval on a synthetic shard with the tiny
# reference models) when that command is built; otherwise the stages that exist, on the tiny
# models shipped in tests/data/. Usage: scripts/main_job.sh ASAM_BINARY OUT_DIR
set -euo pipefail
ASAM=$(realpath "$1")
OUT=$2
SRC=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
if "$ASAM" --help | grep -q "^  demo "; then
    echo "main job: asam demo -> $OUT/demo"
    exec "$ASAM" demo --out "$OUT/demo"
fi

echo "main job: 'asam demo' is not built yet; running the stages that exist (tiny models)"
mkdir -p "$OUT/models"
[ -f "$OUT/models/sam_tiny.pth" ] || gzip -dc "$SRC/tests/data/sam_tiny/model.pth.gz" > "$OUT/models/sam_tiny.pth"
[ -f "$OUT/models/sd_tiny.ckpt" ] || gzip -dc "$SRC/tests/data/sd_tiny/model.ckpt.gz" > "$OUT/models/sd_tiny.ckpt"

echo "== SAM (tiny reference model): one box prompt on a 480x640 test image"
"$ASAM" segment --model "$OUT/models/sam_tiny.pth" --image "$SRC/tests/data/sam_tiny/image_a.png" \
    --box 260,110,540,290 --out "$OUT/sam_mask.png" --overlay "$OUT/sam_overlay.png" --json

echo "== Stable Diffusion (tiny reference model): 4 DDIM steps at 128x128"
"$ASAM" txt2img --sd "$OUT/models/sd_tiny.ckpt" --prompt "a photo of a red ellipse" \
    --steps 4 --size 128 --seed 1 --out "$OUT/sd_image.png"

echo "== engine benchmark (quick)"
"$ASAM" bench engine --quick
echo "outputs in $OUT/"
