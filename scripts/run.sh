#!/usr/bin/env bash
# The main job on the built-in default (no downloads): builds asam, then runs what exists of
# the ASAM pipeline on the tiny reference models shipped in tests/data/ — see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
exec scripts/main_job.sh build/asam out
