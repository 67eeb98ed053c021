#!/bin/bash
# The attack works on the world's trained models (issue 9): on a fixed training scene (world
# seed 1, train sa_176: two objects on a textured background), inversion + a 5-iteration
# skip-gradient attack with the official loss weights (100 BCE + 100 Dice - 1 L2) lowers
# SAM-mini's box IoU by a clear margin (0.741 -> 0.482 when written). With random weights SAM's
# IoU is about 0.1 on these scenes, so the first check alone fails; an attack that did nothing
# (or pushed the wrong way) fails the second. The same attack with the mask terms only
# (--w-l2 0), reusing the inversion, must lower IoU too.
# How often the official attack finds a lower-IoU latent over 200 scenes is in
# data/world/experiment (74 %, mean drop 0.053); this scene is one where it clearly does.
# usage: bash cli_world_attack.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"
W=$SRC/data/world
for f in "$W/sam_mini.safetensors" "$W/controlnet.safetensors" "$W/sd/unet"; do
    [ -e "$f" ] || { echo "SKIP: $f not found"; exit 77; }
done
A=("$BIN" --threads 2)
"${A[@]}" world --out "$TMP/w" --seed 1 --count 176 --eval-count 1 --quiet >/dev/null 2>&1 ||
    { echo "FAIL asam world"; exit 1; }
D=$TMP/scene
mkdir -p "$D"
cp "$TMP/w/train/sa_176.jpg" "$TMP/w/train/sa_176.json" "$D/"
grep '"sa_176.jpg"' "$TMP/w/train/captions.jsonl" >"$D/captions.jsonl"
OPTS=(--sd "$W/sd" --controlnet "$W/controlnet.safetensors" --sam "$W/sam_mini.safetensors"
      --data "sa1b:$D" --captions "$D/captions.jsonl" --size 128 --steps 10 --null-steps 5
      --iters 5 --grad skip)

# field NAME FILE: a number of the attack record
field() { sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\\([-0-9.e]*\\),*$/\\1/p" "$2" | head -1; }
# attacked WHAT RECORD: the checks on one attack record
attacked() {
    local clean adv best
    clean=$(field miou_clean "$2") adv=$(field miou_adv "$2") best=$(field best_iter "$2")
    echo "$1: IoU $clean -> $adv (kept iterate $best)"
    check "$1: SAM-mini is trained (clean IoU $clean >= 0.6)" \
        awk -v c="$clean" 'BEGIN{exit !(c >= 0.6)}'
    check "$1: IoU lowered by >= 0.1 ($clean -> $adv)" \
        awk -v c="$clean" -v a="$adv" 'BEGIN{exit !(a <= c - 0.1)}'
    check "$1: the kept latent is an attacked one (iterate $best > 0)" [ "${best:-0}" -gt 0 ]
}

if "${A[@]}" generate "${OPTS[@]}" --out "$TMP/official" >"$TMP/log" 2>&1; then
    attacked "official weights" "$TMP/official/adv/sa_176.attack.json"
else
    failm "generate"
    cat "$TMP/log"
fi
# the same inversion (its record does not depend on the attack's weights): only the attack reruns
mkdir -p "$TMP/masks_only" && cp -r "$TMP/official/inv" "$TMP/masks_only/"
if "${A[@]}" generate "${OPTS[@]}" --w-l2 0 --out "$TMP/masks_only" >"$TMP/log" 2>&1; then
    attacked "mask terms only (--w-l2 0)" "$TMP/masks_only/adv/sa_176.attack.json"
else
    failm "generate --w-l2 0"
    cat "$TMP/log"
fi
exit $fail
