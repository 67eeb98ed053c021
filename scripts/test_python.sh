#!/usr/bin/env bash
# The Python package: builds the wheel from python/ (scikit-build-core over the repository's
# CMake project; pip fetches scikit-build-core, numpy and pytest from PyPI), installs it into a
# fresh virtual environment, and runs python/tests with pytest against the installed package.
# Usage: scripts/test_python.sh [BUILD_DIR (default build)]; BUILD_DIR/asam, when present, is
# the build tree's program the tests also compare against.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=$(realpath -m "${1:-build}")
VENV=$BUILD/python-venv
rm -rf "$VENV" "$BUILD/python-wheel"
python3 -m venv "$VENV"
# The CMake build folder is kept between runs, so a rebuild only compiles what changed.
"$VENV/bin/pip" wheel -q ./python --no-deps -w "$BUILD/python-wheel" \
    --config-settings=build-dir="$BUILD/python-cmake"
"$VENV/bin/pip" install -q "$BUILD"/python-wheel/asam-*.whl pytest
# Run outside the source tree so `import asam` is the installed package.
cd "$BUILD"
export ASAM_SOURCE_DIR=$ROOT
[ -x "$BUILD/asam" ] && export ASAM_CLI=$BUILD/asam
log=$(mktemp)
status=0
OMP_WAIT_POLICY=PASSIVE "$VENV/bin/pytest" -q -p no:cacheprovider "$ROOT/python/tests" >"$log" 2>&1 || status=$?
if [ $status -ne 0 ]; then cat "$log"; else tail -n 1 "$log"; fi
rm -f "$log"
exit $status
