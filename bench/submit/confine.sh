#!/usr/bin/env bash
# Submissions/s and the submit-to-running latency with confinement off (jazarid and its local
# node in one process, jobs as root) and on (jazarid as a service account, its local agent a
# root process of its own running jobs as a job account in cgroups), same run, same machine.
# Needs root: it makes the two accounts and removes them after.
# Usage: bench/submit/confine.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
build="${1:-build}"
seconds="${2:-5}"
srv="jzbsrv$$"
job="jzbjob$$"
useradd --system --no-create-home --shell /usr/sbin/nologin "$srv"
useradd --no-create-home --shell /usr/sbin/nologin "$job"  # a person's account (uid >= UID_MIN)
trap 'pkill -KILL -u "$job" 2>/dev/null || true; userdel "$srv" 2>/dev/null || true;
      userdel "$job" 2>/dev/null || true' EXIT
echo "confinement off:" >&2
"$build/bin/jazari-bench-submit" --seconds "$seconds"
echo "confinement on:" >&2
"$build/bin/jazari-bench-submit" --seconds "$seconds" --confine "$srv:$job"
