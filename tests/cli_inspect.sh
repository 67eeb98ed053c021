#!/bin/bash
# asam inspect: tensor count on the tiny SAM .pth, JSON output, one-line errors on bad files.
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
exit $fail
