#!/usr/bin/env bash
# Builds asam and runs every test: the release build's full CTest suite, the unit tests
# again under AddressSanitizer + UndefinedBehaviorSanitizer, and a short bounded libFuzzer run
# of each parser harness, plus the Python package (wheel built and installed into a fresh
# virtual environment, then pytest). Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --fuzz
jobs=$(nproc)

echo "== release build + tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== Python package: wheel into a fresh venv + pytest"
scripts/test_python.sh build

echo "== sanitizer build (ASan + UBSan) + tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DASAM_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$jobs" -LE slow)

echo "== fuzz smoke run"
scripts/fuzz_smoke.sh "${FUZZ_SECONDS:-10}"
