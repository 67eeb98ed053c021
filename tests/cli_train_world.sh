#!/bin/bash
# scripts/train_world.sh with tiny counts and two steps per model: every file of data/world is
# written, with the committed files' names and shapes (the same architectures), and a rerun
# resumes instead of redoing the work.
# usage: bash cli_train_world.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"
[ -f "$SRC/data/world/sam_mini.safetensors" ] || { echo "SKIP: data/world not committed"; exit 77; }
export OMP_NUM_THREADS=1
T="SD_COUNT=4 SAM_COUNT=6 EVAL_COUNT=2 SAM_STEPS=2 VAE_STEPS=2 UNET_STEPS=2 CN_STEPS=2"
env $T bash "$SRC/scripts/train_world.sh" "$BIN" "$TMP/work" "$TMP/out" > "$TMP/log" 2>&1
check "train_world.sh (tiny) exits 0" [ $? -eq 0 ]
for f in sam_mini sd/vae/diffusion_pytorch_model sd/unet/diffusion_pytorch_model sd/text_encoder/model controlnet; do
    a=$("$BIN" inspect "$TMP/out/$f.safetensors" 2>/dev/null | cut -f1,3)
    b=$("$BIN" inspect "$SRC/data/world/$f.safetensors" | cut -f1,3)
    check "$f: the committed names and shapes" [ -n "$a" -a "$a" = "$b" ]
    check "$f: F16" [ "$("$BIN" inspect "$TMP/out/$f.safetensors" | grep -c $'\tF32\t')" -eq 0 ]
done
for f in sd/model_index.json sd/unet/config.json sd/vae/config.json sd/tokenizer/vocab.json; do
    check "$f written" test -s "$TMP/out/$f"
done
env $T bash "$SRC/scripts/train_world.sh" "$BIN" "$TMP/work" "$TMP/out" > "$TMP/log2" 2>&1
check "a rerun exits 0" [ $? -eq 0 ]
check "  and resumes the finished trainings" grep -q "resumed" "$TMP/work/sd.log"
exit $fail
