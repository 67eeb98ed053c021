#!/bin/bash
# CLI tests of `asam txt2img` and `asam reconstruct` on the tiny SD model (2-4 steps, 128 px):
# outputs are produced, deterministic, and bad input gives one "asam <cmd>: ..." line naming the
# file, exit status 1 and no output.   usage: bash cli_sd.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"
ASAM=$BIN T=$TMP
fixture sd_tiny/model.ckpt "$T/model.ckpt"
MODEL=$T/model.ckpt
A=("$ASAM" --threads 1)

# run_ok NAME OUTFILE CMD...: exit 0 and OUTFILE written
run_ok() {
    local name="$1" out="$2"
    shift 2
    if "$@" >"$T/log" 2>&1 && [ -s "$out" ]; then pass "$name"; else failm "$name"; cat "$T/log"; fi
}
# run_err NAME PATTERN OUTFILE CMD...: exit 1 (RC=2: a usage error), one line on stderr matching
# PATTERN, no OUTFILE
run_err() {
    local name="$1" pat="$2" out="$3" want=${RC:-1}
    shift 3
    rm -f "$out"
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    local lines
    lines=$(wc -l <"$T/err")
    if [ $rc -eq "$want" ] && [ "$lines" -eq 1 ] && grep -q -- "$pat" "$T/err" && [ ! -e "$out" ]; then
        pass "$name: $(cat "$T/err")"
    else
        failm "$name (rc $rc, $lines lines, output $([ -e "$out" ] && echo present || echo absent))"
        cat "$T/err"
    fi
}

P="a photograph of an astronaut riding a horse"
run_ok "txt2img 4 steps" "$T/a.png" "${A[@]}" txt2img --sd "$MODEL" --prompt "$P" --steps 4 --size 128 \
    --seed 7 --save "$T/a.safetensors" --out "$T/a.png"
grep -q "step 4/4  t=1 " "$T/log" && pass "progress lines" || failm "progress lines"
[ -s "$T/a.safetensors" ] && pass "--save written" || failm "--save written"
run_ok "txt2img same seed" "$T/b.png" "${A[@]}" txt2img --sd "$MODEL" --prompt "$P" --steps 4 --size 128 \
    --seed 7 --out "$T/b.png"
cmp -s "$T/a.png" "$T/b.png" && pass "deterministic for a seed" || failm "deterministic for a seed"
run_ok "txt2img --latent from --save" "$T/c.png" "${A[@]}" txt2img --sd "$MODEL" --prompt "$P" --steps 4 \
    --size 128 --latent "$T/a.safetensors" --out "$T/c.png"
cmp -s "$T/a.png" "$T/c.png" && pass "--latent reproduces the run" || failm "--latent reproduces the run"
run_ok "txt2img other seed, offset 0, jpg" "$T/d.jpg" "${A[@]}" txt2img --sd "$MODEL" --prompt "$P" \
    --negative "blurry" --steps 2 --steps-offset 0 --cfg 3 --size 128 --seed 8 --out "$T/d.jpg"

run_ok "reconstruct (VAE round trip)" "$T/r1.png" "${A[@]}" reconstruct --sd "$MODEL" --image "$T/a.png" \
    --size 128 --out "$T/r1.png"
run_ok "reconstruct --invert" "$T/r2.png" "${A[@]}" reconstruct --sd "$MODEL" --image "$T/a.png" --size 128 \
    --invert --steps 2 --prompt "$P" --out "$T/r2.png"

if (fixture sd_tiny/control.pth "$T/control.pth") >/dev/null; then
    CN=$T/control.pth
    run_ok "txt2img + ControlNet" "$T/e.png" "${A[@]}" txt2img --sd "$MODEL" --prompt "$P" --steps 2 \
        --size 128 --controlnet "$CN" --control "$T/a.png" --control-scale 0.5 --out "$T/e.png"
    run_ok "reconstruct --invert + ControlNet" "$T/r3.png" "${A[@]}" reconstruct --sd "$MODEL" \
        --image "$T/a.png" --size 128 --invert --steps 2 --cfg 2 --controlnet "$CN" --control "$T/a.png" \
        --out "$T/r3.png"
else
    echo "skip ControlNet runs (control.pth not found)"
fi

DIFF="$FIX/sd_tiny/diffusers"
if [ -d "$DIFF/unet" ]; then
    run_ok "txt2img diffusers folder" "$T/f.png" "${A[@]}" txt2img --sd "$DIFF" --prompt "$P" --steps 2 \
        --size 128 --seed 7 --out "$T/f.png"
    mkdir -p "$T/notok"
    for d in unet vae text_encoder; do ln -s "$DIFF/$d" "$T/notok/$d"; done
    run_err "diffusers folder without tokenizer/" "$T/notok/tokenizer/vocab.json" "$T/x.png" \
        "${A[@]}" txt2img --sd "$T/notok" --prompt x --steps 2 --size 128 --out "$T/x.png"
else
    echo "skip diffusers folder (shared fixtures absent)"
fi

# bad input
run_err "missing tokenizer files" "asam txt2img: /nonexistent-tok/vocab.json" "$T/x.png" \
    "${A[@]}" txt2img --sd "$MODEL" --prompt x --tokenizer /nonexistent-tok --steps 2 --size 128 --out "$T/x.png"
run_err "latent of the wrong shape" "asam txt2img: .*a.safetensors.*expected (1, 4, 8, 8)" "$T/x.png" \
    "${A[@]}" txt2img --sd "$MODEL" --prompt x --latent "$T/a.safetensors" --steps 2 --size 64 --out "$T/x.png"
echo "not an image" >"$T/bad.png"
run_err "unreadable control image" "asam txt2img: .*bad.png" "$T/x.png" \
    "${A[@]}" txt2img --sd "$MODEL" --prompt x --controlnet "$MODEL" --control "$T/bad.png" --steps 2 \
    --size 128 --out "$T/x.png"
run_err "missing model file" "asam txt2img: /nonexistent.ckpt" "$T/x.png" \
    "${A[@]}" txt2img --sd /nonexistent.ckpt --prompt x --out "$T/x.png"
run_err "not a ControlNet" "asam txt2img: .*model.ckpt" "$T/x.png" \
    "${A[@]}" txt2img --sd "$MODEL" --prompt x --controlnet "$MODEL" --control "$T/a.png" --steps 2 \
    --size 128 --out "$T/x.png"
RC=2 run_err "size not a multiple of 64" "asam txt2img: --size" "$T/x.png" \
    "${A[@]}" txt2img --sd "$MODEL" --prompt x --size 100 --out "$T/x.png"
run_err "reconstruct unreadable image" "asam reconstruct: .*bad.png" "$T/x.png" \
    "${A[@]}" reconstruct --sd "$MODEL" --image "$T/bad.png" --size 128 --out "$T/x.png"
run_err "reconstruct missing image" "asam reconstruct: /nonexistent.png" "$T/x.png" \
    "${A[@]}" reconstruct --sd "$MODEL" --image /nonexistent.png --size 128 --out "$T/x.png"

if [ $fail -ne 0 ]; then
    echo "cli_sd: failed"
    exit 1
fi
echo "cli_sd: all checks passed"
