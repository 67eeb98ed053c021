#!/bin/bash
# D10 (issue 16): the official pipeline inverts with one ControlNet (_mask_inv) and attacks with
# another (_mask_adv). `asam generate --attack-controlnet B` must attack with B: the same file
# passed twice gives exactly the one-ControlNet run, a different ControlNet a different
# adversarial image from the same inversion.
# usage: bash cli_attack_controlnet.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"
fixture sd_tiny/model.ckpt "$TMP/model.ckpt"
fixture sd_tiny/control.pth "$TMP/control.pth"
fixture sam_tiny/model.pth "$TMP/model.pth"
SD=$TMP/model.ckpt CN=$TMP/control.pth SAM=$TMP/model.pth
D=$TMP/data
mkdir -p "$D"
cp "$SRC/tests/data/sa1b/sa_1.jpg" "$SRC/tests/data/sa1b/sa_1.json" "$D/"

# a second ControlNet: one training step from the fixture one
"$BIN" train-controlnet --sd "$SD" --data "sa1b:$D" --init-controlnet "$CN" --size 64 --batch 1 \
    --steps 1 --lr 1e-2 --out "$TMP/control2.safetensors" --quiet
check "a second ControlNet trained" [ -s "$TMP/control2.safetensors" ]

OPTS=(--threads 2 generate --sd "$SD" --sam "$SAM" --data "sa1b:$D" --size 128 --steps 2
      --null-steps 1 --iters 1 --max-boxes 3)
"$BIN" "${OPTS[@]}" --controlnet "$CN" --out "$TMP/one" 2> "$TMP/one.log"
check "generate, one ControlNet" [ -s "$TMP/one/adv/sa_1.jpg" ]
"$BIN" "${OPTS[@]}" --controlnet "$CN" --attack-controlnet "$CN" --out "$TMP/same" 2> "$TMP/same.log"
check "the same ControlNet twice = one ControlNet (adversarial image)" \
    cmp -s "$TMP/one/adv/sa_1.jpg" "$TMP/same/adv/sa_1.jpg"
"$BIN" "${OPTS[@]}" --controlnet "$CN" --attack-controlnet "$TMP/control2.safetensors" \
    --out "$TMP/two" 2> "$TMP/two.log"
check "generate, two ControlNets" [ -s "$TMP/two/adv/sa_1.jpg" ]
check "the inversion uses --controlnet (same as the one-ControlNet run)" \
    cmp -s "$TMP/one/inv/sa_1.safetensors" "$TMP/two/inv/sa_1.safetensors"
check "the attack uses --attack-controlnet (another adversarial image)" \
    bash -c '! cmp -s "$1" "$2"' _ "$TMP/one/adv/sa_1.jpg" "$TMP/two/adv/sa_1.jpg"
[ $fail -eq 0 ] || { cat "$TMP/one.log" "$TMP/two.log"; }
exit $fail
