#!/usr/bin/env bash
# Installs what is needed, builds, and starts jazarid on the embedded default: the local node,
# SQLite state in ./jazari-state, the built-in plugins. Extra arguments go to jazarid.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
# As root, jazarid runs as the account 'jazari' (made here when missing) and its local node agent
# confines jobs as their users' Unix accounts; users an admin has not mapped to an account run as
# 'nobody' here (docs/security.md). Not root: everything runs as you, unconfined.
if [ "$(id -u)" = 0 ]; then
  getent passwd jazari >/dev/null ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin jazari
  set -- --default-unix-user "${JAZARI_DEFAULT_UNIX_USER:-nobody}" "$@"
fi
exec ./build/bin/jazarid --listen "${JAZARI_LISTEN:-127.0.0.1:8600}" --state-dir "${JAZARI_STATE_DIR:-$PWD/jazari-state}" "$@"
