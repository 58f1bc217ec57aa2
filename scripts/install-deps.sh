#!/usr/bin/env bash
# Installs the Debian 12 packages Jazari needs to build, run and test (python3-torch: the
# two-node torch.distributed test of the node agents; clang and its runtimes: the libFuzzer
# targets of tests/fuzz; openssl, passwd, procps, util-linux: the tests make a CA, Unix
# accounts and a small tmpfs, and look for processes; dpkg-dev, groff-base, systemd: building
# the Debian packages (dpkg-shlibdeps), checking the man pages and the units (systemd-analyze)
# in tests/integration/install). Idempotent: installs only what is missing. Run as root (or
# with sudo available).
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git python3 curl
  openssl passwd procps util-linux
  dpkg-dev groff-base systemd
  chromium chromium-driver python3-selenium # the dashboard's browser test (tests/integration/dashboard)
  libevent-dev libjansson-dev libsqlite3-dev libssl-dev
  libhwloc-dev hwloc
  libcmocka-dev
  mypy python3-venv # the Python client: type-checked, and installed into a venv (tests/integration/pyclient)
  zsh # checks the zsh completion (tests/integration/install)
  strace # the build tree's worker opens no library in its working folder (tests/integration/install)
  prometheus # promtool: tests/integration/metrics checks /metrics and the Grafana dashboard's PromQL
  clang libclang-rt-dev
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libclblast-dev
  libopenblas-dev libpng-dev zlib1g-dev
  dataset-fashion-mnist
  python3-torch
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
