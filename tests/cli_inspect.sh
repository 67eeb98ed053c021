#!/bin/bash
# asam inspect: tensor count on the tiny SAM .pth, JSON output, one-line errors on bad files;
# asam convert: the same model in F16 (inspect, provenance, segment runs), its failures.
# usage: bash cli_inspect.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"

PTH=$TMP/model.pth
fixture sam_tiny/model.pth "$PTH"

out=$("$BIN" inspect "$PTH")
rc=$?
check "inspect exits 0" [ $rc -eq 0 ]
check "188 tensor lines" [ "$(echo "$out" | grep -c $'\t')" -eq 188 ]
check "summary line" grep -q "^188 tensors, [0-9]* values, format torch-zip$" <<<"$out"
check "pos_embed listed" grep -q $'^image_encoder.pos_embed\tF32\t\\[1, 64, 64, 64\\]$' <<<"$out"

json=$("$BIN" inspect --json "$PTH")
check "--json exits 0" [ $? -eq 0 ]
check "--json count" grep -q '"count":[[:space:]]*188' <<<"$json"
check "--json names" [ "$(grep -c '"name":' <<<"$json")" -eq 188 ]

# truncated file: one line on stderr naming the file, exit 1, no crash
head -c 100000 "$PTH" > "$TMP/cut.pth"
err=$("$BIN" inspect "$TMP/cut.pth" 2>&1 >/dev/null)
rc=$?
check "truncated file exits 1 (got $rc)" [ $rc -eq 1 ]
check "one error line" [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ]
check "error names the file: $err" grep -q "^asam inspect: $TMP/cut.pth: " <<<"$err"

printf 'not a checkpoint' > "$TMP/junk.bin"
"$BIN" inspect "$TMP/junk.bin" >/dev/null 2>&1
check "junk file exits 1" [ $? -eq 1 ]
"$BIN" inspect "$TMP/missing.pth" >/dev/null 2>&1
check "missing file exits 1" [ $? -eq 1 ]
"$BIN" inspect >/dev/null 2>&1
check "no FILE: usage error exits 2" [ $? -eq 2 ]
"$BIN" inspect --bogus "$PTH" >/dev/null 2>&1
check "unknown option exits 2" [ $? -eq 2 ]
"$BIN" inspect --help | grep -q "usage: asam inspect"
check "--help" [ $? -eq 0 ]

# convert: F16 safetensors of the .pth; inspect sees F16 and the conversion's provenance
"$BIN" convert "$PTH" "$TMP/m16.safetensors" --dtype f16 > /dev/null
check "convert --dtype f16 exits 0" [ $? -eq 0 ]
out=$("$BIN" inspect "$TMP/m16.safetensors")
check "  188 tensors, format safetensors" grep -q "^188 tensors, [0-9]* values, format safetensors$" <<<"$out"
check "  pos_embed is F16" grep -q $'^image_encoder.pos_embed\tF16\t\\[1, 64, 64, 64\\]$' <<<"$out"
check "  no F32 tensor left" [ "$(grep -c $'\tF32\t' <<<"$out")" -eq 0 ]
check "  half the size" [ "$(stat -c %s "$TMP/m16.safetensors")" -lt "$(( $(stat -c %s "$PTH") * 6 / 10 ))" ]
check "  provenance names the conversion" grep -q 'convert.*--dtype.*F16' <<<"$("$BIN" inspect --json "$TMP/m16.safetensors")"
IMG=$TMP/img.png
fixture sam_tiny/image_a.png "$IMG"
"$BIN" segment --model "$TMP/m16.safetensors" --image "$IMG" --box 100,100,400,300 --out "$TMP/mask16.png" > /dev/null
check "  segment runs on the F16 model" [ $? -eq 0 -a -f "$TMP/mask16.png" ]
"$BIN" convert "$TMP/cut.pth" "$TMP/c16.safetensors" 2> "$TMP/err"
check "convert of a truncated file: failure (1), one line naming it, no output" \
    [ $? -eq 1 -a "$(wc -l < "$TMP/err")" -eq 1 -a ! -e "$TMP/c16.safetensors" ]
check "  names the file" grep -q "cut.pth" "$TMP/err"
"$BIN" convert "$PTH" "$TMP/x.safetensors" --dtype f8 2> /dev/null
check "convert --dtype f8: usage error (2)" [ $? -eq 2 -a ! -e "$TMP/x.safetensors" ]
"$BIN" convert "$PTH" 2> /dev/null
check "convert with one file: usage error (2)" [ $? -eq 2 ]
exit $fail
