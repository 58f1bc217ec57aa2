#!/usr/bin/env bash
# The cost of confinement per job (issue 9): trivial jobs through one real jazari-node agent,
# unconfined and then confined (the job's Unix account, a cgroup per part), in the same run, on
# the same machine. Needs root: it makes a job account and removes it after.
# Usage: bench/nodes/confine.sh [BUILD_DIR] [JOBS]
set -euo pipefail
build="${1:-build}"
jobs="${2:-2000}"
acct="jzbench$$"
useradd --no-create-home --shell /usr/sbin/nologin "$acct"  # a person's account (uid >= UID_MIN)
trap 'pkill -KILL -u "$acct" 2>/dev/null || true; userdel "$acct" 2>/dev/null || true' EXIT
for mode in off on; do
  args=(--agents 0 --latency-jobs 200 --jobs "$jobs")
  [ "$mode" = on ] && args+=(--confine "$acct")
  echo "confinement $mode:" >&2
  "$build/bin/jazari-bench-nodes" "${args[@]}"
done
