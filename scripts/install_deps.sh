#!/usr/bin/env bash
# Installs the Debian 12 packages asam needs, only those missing, non-interactively.
# Usage: scripts/install_deps.sh [--fuzz]   (--fuzz adds clang + libFuzzer runtime)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev libjpeg62-turbo-dev libpng-dev
      zlib1g-dev libcjson-dev libarchive-dev python3-venv libdnnl-dev
      openmpi-bin libopenmpi-dev) # MPI: one job over many processes and machines (optional)
if [ "${1:-}" = "--fuzz" ]; then pkgs+=(clang libclang-rt-14-dev); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
