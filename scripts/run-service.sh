#!/usr/bin/env bash
# Installs what is needed, builds, and starts jazarid on the embedded default: the local node,
# SQLite state in ./jazari-state, the built-in plugins. Extra arguments go to jazarid.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
exec ./build/bin/jazarid --listen "${JAZARI_LISTEN:-127.0.0.1:8600}" --state-dir "${JAZARI_STATE_DIR:-$PWD/jazari-state}" "$@"
