#!/bin/bash
# CLI test of `asam generate` / `invert` / `attack` on the tiny models (128 px, 3 DDIM steps):
# outputs appear; a run stopped midway (test hook ASAM_GENERATE_STOP_AFTER) and restarted gives
# byte-identical files to an uninterrupted run; --shard splits the work; attack reuses stored
# inversions; bad input gives one "asam <cmd>: ..." line and exit 1 (usage errors 2).
# usage: bash cli_generate.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"
ASAM=$BIN T=$TMP
fixture sd_tiny/model.ckpt "$T/model.ckpt"
fixture sd_tiny/control.pth "$T/control.pth"
fixture sam_tiny/model.pth "$T/model.pth"
SD=$T/model.ckpt CN=$T/control.pth SAM=$T/model.pth

# a 3-image SA-1B folder (the 40x30 test image under three names) and captions
D="$T/data"
mkdir -p "$D"
for n in 1 2 3; do
    cp "$SRC/tests/data/sa1b/sa_1.jpg" "$D/sa_$n.jpg"
    cp "$SRC/tests/data/sa1b/sa_1.json" "$D/sa_$n.json"
done
printf '{"img": "sa_1.jpg", "prompt": "a red square"}\n{"img": "sa_2.jpg", "prompt": ""}\n{"img": "sa_3.jpg", "prompt": "a photo"}\n' >"$T/caps.jsonl"
printf '{"img": "sa_1.jpg", "prompt": "a red square"}\n' >"$T/caps_short.jsonl"

A=("$ASAM" --threads 2)
OPTS=(--sd "$SD" --controlnet "$CN" --sam "$SAM" --captions "$T/caps.jsonl" --size 128 --steps 3
      --null-steps 2 --iters 1 --max-boxes 3)

if "${A[@]}" generate "${OPTS[@]}" --data "sa1b:$D" --out "$T/full" >"$T/log" 2>&1 &&
    [ -s "$T/full/adv/sa_3.jpg" ] && [ -s "$T/full/adv/sa_1.attack.json" ] &&
    [ -s "$T/full/inv/sa_2.safetensors" ] && [ -s "$T/full/summary.json" ]; then
    pass "generate writes inversions, adversarial images, records and the summary"
else
    failm "generate"; cat "$T/log"
fi
grep -q "ETA" "$T/log" && pass "progress line with ETA" || failm "progress line"
grep -q '"miou_before"' "$T/full/summary.json" && pass "summary has mean IoU before/after" ||
    failm "summary content"

# stopped after 1 image (exit 3), then resumed
ASAM_GENERATE_STOP_AFTER=1 "${A[@]}" generate "${OPTS[@]}" --data "sa1b:$D" --out "$T/res" >"$T/log1" 2>&1
rc=$?
n1=$(ls "$T/res/adv/"*.jpg 2>/dev/null | wc -l)
[ $rc -eq 3 ] && [ "$n1" -eq 1 ] && pass "stop hook: exit 3 after one image" ||
    { failm "stop hook (rc $rc, $n1 images)"; cat "$T/log1"; }
"${A[@]}" generate "${OPTS[@]}" --data "sa1b:$D" --out "$T/res" >"$T/log2" 2>&1 ||
    { failm "resume"; cat "$T/log2"; }
same=1
for f in $(cd "$T/full" && find . -type f | sort); do
    cmp -s "$T/full/$f" "$T/res/$f" || { same=0; echo "differs: $f"; }
done
[ "$(cd "$T/full" && find . -type f | wc -l)" = "$(cd "$T/res" && find . -type f | wc -l)" ] || same=0
[ $same -eq 1 ] && pass "stopped + resumed run is byte-identical to an uninterrupted one" ||
    failm "resume differs"

# a third run does nothing new and leaves the files alone
"${A[@]}" generate "${OPTS[@]}" --data "sa1b:$D" --out "$T/res" >"$T/log3" 2>&1
! grep -q "s/image" "$T/log3" && cmp -s "$T/full/summary.json" "$T/res/summary.json" &&
    pass "finished images are skipped" || { failm "re-run recomputed"; cat "$T/log3"; }

# a resume with other options refuses, naming the option; --force redoes the work
"${A[@]}" generate "${OPTS[@]}" --alpha 0.03 --data "sa1b:$D" --out "$T/res" >"$T/log6" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "made with --alpha 0.0199999996, now 0.0299999993" "$T/log6" &&
    pass "resume with another --alpha refuses and names it" ||
    { failm "provenance refusal (rc $rc)"; cat "$T/log6"; }
"${A[@]}" generate "${OPTS[@]}" --null-lr 0.02 --data "sa1b:$D" --out "$T/res" >"$T/log7" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "inv/sa_1.safetensors: made with --null-lr" "$T/log7" &&
    pass "an inversion made with another --null-lr is not reused" ||
    { failm "inversion provenance (rc $rc)"; cat "$T/log7"; }
"$ASAM" --threads 2 --precision bf16 generate "${OPTS[@]}" --data "sa1b:$D" --out "$T/res" \
    >"$T/log11" 2>&1
rc=$?
if grep -q "no AVX512-BF16\|stays fp32" "$T/log11"; then
    echo "note: this CPU has no bf16; the --precision record is not exercised"
else
    [ $rc -eq 1 ] && grep -q "made with --precision fp32, now bf16" "$T/log11" &&
        pass "a resume in another --precision refuses and names it" ||
        { failm "precision provenance (rc $rc)"; cat "$T/log11"; }
fi
"${A[@]}" generate "${OPTS[@]}" --alpha 0.03 --force --data "sa1b:$D" --out "$T/res" >"$T/log8" 2>&1 &&
    grep -q '"--alpha":\s*"0.0299999993"' "$T/res/adv/sa_1.attack.json" &&
    pass "--force redoes it and records the new options" ||
    { failm "--force"; cat "$T/log8"; }

# an unwritable --out fails before the models load
"${A[@]}" generate "${OPTS[@]}" --data "sa1b:$D" --out /proc/asam_no_such_dir >"$T/log10" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "/proc/asam_no_such_dir: output folder cannot be created" "$T/log10" &&
    pass "unwritable --out refused before any work" || { failm "--out check (rc $rc)"; cat "$T/log10"; }

# an image without a caption is an error (official captions[name]: KeyError)
"${A[@]}" invert "${OPTS[@]}" --captions "$T/caps_short.jsonl" "$D/sa_2.jpg" --out "$T/nocap" \
    >"$T/log9" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "caps_short.jsonl: no caption for sa_2.jpg" "$T/log9" &&
    pass "an image without a caption is refused" || { failm "missing caption (rc $rc)"; cat "$T/log9"; }

# shards: 0/2 takes sa_1 and sa_3, 1/2 takes sa_2
"${A[@]}" generate "${OPTS[@]}" --data "sa1b:$D" --out "$T/sh" --shard 1/2 >"$T/log4" 2>&1
[ -s "$T/sh/adv/sa_2.jpg" ] && [ ! -e "$T/sh/adv/sa_1.jpg" ] && [ -s "$T/sh/summary.1-of-2.json" ] &&
    cmp -s "$T/sh/adv/sa_2.jpg" "$T/full/adv/sa_2.jpg" && pass "--shard 1/2" ||
    { failm "--shard"; cat "$T/log4"; }

# invert then attack as two commands = generate
"${A[@]}" invert "${OPTS[@]}" "$D/sa_1.jpg" --out "$T/two" >"$T/log5" 2>&1 &&
    "${A[@]}" attack "${OPTS[@]}" "$D/sa_1.jpg" --out "$T/two" >>"$T/log5" 2>&1 &&
    cmp -s "$T/two/adv/sa_1.jpg" "$T/full/adv/sa_1.jpg" &&
    cmp -s "$T/two/inv/sa_1.safetensors" "$T/full/inv/sa_1.safetensors" &&
    pass "invert + attack = generate" || { failm "invert + attack"; cat "$T/log5"; }

# errors: one line, exit 1 for a failure, 2 for a usage error
err_case() {
    local name="$1" pat="$2" want="$3"
    shift 3
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -eq "$want" ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "$pat" "$T/err"; then pass "$name"
    else failm "$name (rc $rc)"; cat "$T/err"; fi
}
err_case "missing data folder" "asam generate: .*nope.*" 1 "${A[@]}" generate "${OPTS[@]}" --data "sa1b:$T/nope" --out "$T/e1"
err_case "attack without inversion" "asam attack: .*no inversion" 1 "${A[@]}" attack "${OPTS[@]}" "$D/sa_2.jpg" --out "$T/e2"
err_case "bad --grad" "asam generate: --grad" 2 "${A[@]}" generate "${OPTS[@]}" --grad sometimes --data "$D" --out "$T/e3"
err_case "missing SD model" "asam generate: .*missing.ckpt" 1 "${A[@]}" generate --sd "$T/missing.ckpt" --sam "$SAM" --data "$D" --out "$T/e4"

[ $fail -eq 0 ] && echo "all generate CLI tests passed"
exit $fail
