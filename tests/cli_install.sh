#!/bin/bash
# Relocatable install: builds a copy of the sources in a temporary folder, installs it into a
# prefix, MOVES the prefix, deletes the source and build copies, then checks that the installed
# program and library find their data (share/asam) from their own location: `asam segment` with
# the installed tiny SAM gives the build tree's exact mask, `asam txt2img` with the installed
# tiny SD (CLIP vocabulary from share/asam/clip) runs, `asam demo --quick` runs the pipeline
# end to end on the installed world models and writes its report, and two C programs — one built with
# `pkg-config --cflags --libs asam`, one with CMake's find_package(asam) — use libasam.so.
# usage: bash cli_install.sh ASAM_BIN SRC_DIR
set -u
. "$2/tests/lib/cli_common.sh"
unset ASAM_DATA_DIR
for tool in cmake pkg-config cc gzip; do
    command -v $tool >/dev/null || { echo "SKIP: $tool not found"; exit 77; }
done
IMG=$SRC/tests/data/sam_tiny/image_a.png
[ -f "$IMG" ] || { echo "SKIP: image_a.png not found"; exit 77; }

# --- copy of what the build needs (never the real tree), build, install ---
COPY=$TMP/src BUILD=$TMP/build
mkdir -p "$COPY/tests/data/sam_tiny" "$COPY/tests/data/sd_tiny"
cp -r "$SRC/CMakeLists.txt" "$SRC/cmake" "$SRC/src" "$SRC/include" "$SRC/data" "$COPY/"
cp "$SRC/tests/data/sam_tiny/model.pth.gz" "$COPY/tests/data/sam_tiny/"
cp "$SRC/tests/data/sd_tiny/model.ckpt.gz" "$SRC/tests/data/sd_tiny/control.pth.gz" \
    "$COPY/tests/data/sd_tiny/"
if ! { cmake -S "$COPY" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$TMP/prefix" &&
    cmake --build "$BUILD" -j"$(nproc)" --target asam_cli asam_shared asam &&
    cmake --install "$BUILD"; } >"$TMP/build.log" 2>&1; then
    tail -30 "$TMP/build.log"
    echo "FAIL build + install of the copy"
    exit 1
fi
mv "$TMP/prefix" "$TMP/moved"
rm -rf "$COPY" "$BUILD"
P=$TMP/moved

check "installed layout" test -x "$P/bin/asam" -a -f "$P/lib/libasam.a" \
    -a -f "$P/include/asam/sam.h" -a -f "$P/include/asam/data_dir.h" \
    -a -f "$P/lib/pkgconfig/asam.pc" -a -f "$P/lib/cmake/asam/asamConfig.cmake" \
    -a -f "$P/share/asam/clip/vocab.json" -a -f "$P/share/asam/models/sam_tiny/model.pth.gz"
check "libasam.so has a versioned soname" \
    bash -c "objdump -p '$P/lib/libasam.so' | grep -q 'SONAME *libasam.so.0'"
check "nothing installed names the source, build or install folders" \
    bash -c "! grep -rlF -e '$TMP/src' -e '$TMP/build' -e '$TMP/prefix' '$P'"

# --- the relocated program finds its data ---
gzip -dc "$P/share/asam/models/sam_tiny/model.pth.gz" >"$TMP/sam.pth"
"$P/bin/asam" segment --model "$TMP/sam.pth" --image "$IMG" --box 252.5,105,548,297 \
    --out "$TMP/inst.png" >/dev/null
check "installed asam segment exits 0" [ $? -eq 0 ]
"$BIN" segment --model "$TMP/sam.pth" --image "$IMG" --box 252.5,105,548,297 \
    --out "$TMP/tree.png" >/dev/null
check "installed and build-tree masks identical" cmp -s "$TMP/inst.png" "$TMP/tree.png"
gzip -dc "$P/share/asam/models/sd_tiny/model.ckpt.gz" >"$TMP/sd.ckpt"
"$P/bin/asam" txt2img --sd "$TMP/sd.ckpt" --prompt "a photo of a cat" --steps 1 --size 64 \
    --out "$TMP/t.png" >/dev/null 2>"$TMP/t.err"
check "installed asam txt2img (CLIP vocabulary from share/asam) exits 0" [ $? -eq 0 -a -s "$TMP/t.png" ]
"$P/bin/asam" demo --out "$TMP/demo" --assets "$TMP/none" >/dev/null 2>&1
check "asam demo with a missing --assets folder fails" [ $? -ne 0 ]
out=$("$P/bin/asam" demo --help)
check "asam demo --help names share/asam/models" grep -q "share/asam/models" <<<"$out"
# The real demo (quick mode, about 25 s on one thread), its models from the moved share/asam.
start=$(date +%s)
(cd "$TMP" && OMP_NUM_THREADS=1 "$P/bin/asam" demo --quick --out "$TMP/demo_run") \
    >/dev/null 2>"$TMP/demo.err"
check "installed asam demo --quick exits 0 (took $(($(date +%s) - start)) s)" [ $? -eq 0 ]
check "demo took its models from the moved prefix" \
    grep -q "| models | the world's trained models in $P/share/asam/models/world |" "$TMP/demo_run/report.md"
for f in report.md report/sa_1_panel.png report/attack_iou.svg report/heldout_1_panel.png \
    gen/adv/sa_1.jpg tune/sam_tuned.pth; do
    check "demo wrote $f" test -s "$TMP/demo_run/$f"
done
check "demo report has the evaluation table" \
    grep -q "^| test | 1 |" "$TMP/demo_run/report.md"
ASAM_DATA_DIR=$TMP/none "$P/bin/asam" txt2img --sd "$TMP/sd.ckpt" --prompt cat --steps 1 \
    --size 64 --out "$TMP/t2.png" >/dev/null 2>"$TMP/t2.err"
check "a wrong ASAM_DATA_DIR fails with one line naming it" \
    bash -c "[ $? -ne 0 ] && grep -q 'ASAM_DATA_DIR=$TMP/none' '$TMP/t2.err' && [ ! -e '$TMP/t2.png' ]"

# --- C programs against the installed library ---
cat >"$TMP/prog.c" <<'C'
#include <asam/data_dir.h>
#include <asam/error.h>
#include <asam/sd.h>
#include <stdio.h>
#include <string.h>
/* Prints the data folder libasam.so found by itself and the CLIP ids of a prompt. */
int main(void) {
    const char *d = asam_data_dir();
    asam_clip_tokenizer *tok = NULL;
    if (!d || asam_clip_tokenizer_load_dir(NULL, &tok)) {
        fprintf(stderr, "%s\n", asam_last_error());
        return 1;
    }
    int64_t ids[77];
    int n = asam_clip_tokenize(tok, "a photo of a cat", ids);
    printf("%s %d %lld %lld\n", d, n, (long long)ids[0], (long long)ids[1]);
    asam_clip_tokenizer_free(tok);
    return 0;
}
C
flags=$(PKG_CONFIG_PATH=$P/lib/pkgconfig pkg-config --cflags --libs asam)
cc -std=c11 "$TMP/prog.c" $flags -Wl,-rpath,"$P/lib" -o "$TMP/prog_pc" 2>"$TMP/pc.err"
check "pkg-config program builds" [ $? -eq 0 ]
out=$("$TMP/prog_pc")
check "pkg-config program: libasam finds $P/share/asam" grep -q "^$P/share/asam " <<<"$out"
check "pkg-config program links libasam.so" \
    bash -c "ldd '$TMP/prog_pc' | grep -q '$P/lib/libasam.so.0'"
mkdir -p "$TMP/cm"
cp "$TMP/prog.c" "$TMP/cm/"
cat >"$TMP/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(use_asam C)
find_package(asam REQUIRED)
add_executable(prog prog.c)
target_link_libraries(prog PRIVATE asam::asam)
CM
{ cmake -S "$TMP/cm" -B "$TMP/cm/build" -DCMAKE_PREFIX_PATH="$P" &&
    cmake --build "$TMP/cm/build"; } >"$TMP/cm.log" 2>&1
check "find_package(asam) program builds" [ $? -eq 0 ]
out2=$("$TMP/cm/build/prog")
check "find_package program prints what the pkg-config one does" [ -n "$out2" -a "$out2" = "$out" ]
[ $fail -eq 0 ] || tail -n 20 "$TMP/cm.log" "$TMP/pc.err" "$TMP/t.err" "$TMP/demo.err"
exit $fail
