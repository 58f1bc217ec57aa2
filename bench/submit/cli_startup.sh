#!/usr/bin/env bash
# Start-up cost of the `jazari` CLI as a shell script sees it: milliseconds per `jazari --help`
# (process start, dynamic linking, nothing else), and submissions/s of a serial loop of
# `jazari submit` against a fresh local jazarid (a process and a connection per job, what a
# job-array script does). For comparison the same loop with Slurm's sbatch when it is installed.
# Builds nothing. Prints plain "name value unit" lines on stdout; progress goes to stderr.
# Usage: bench/submit/cli_startup.sh [BUILD_DIR] [HELP_CALLS] [SUBMITS]
set -euo pipefail
build="$(cd "${1:-build}" && pwd)"
help_calls="${2:-1000}"
submits="${3:-300}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
jazari="$build/bin/jazari"
jazarid="$build/bin/jazarid"
for exe in "$jazari" "$jazarid"; do
  [ -x "$exe" ] || { echo "cli_startup: $exe is not built" >&2; exit 2; }
done

state="$(mktemp -d "${TMPDIR:-/tmp}/jazari-cli-bench.XXXXXX")"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Seconds since the epoch with microseconds (bash 5), for differences only.
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }

# The floor: the same loop starting a program that does nothing.
t0=$(now)
for ((i = 0; i < help_calls; i++)); do /bin/true >/dev/null; done
t1=$(now)
awk -v s="$(elapsed "$t0" "$t1")" -v n="$help_calls" \
  'BEGIN { printf "true_ms_per_call %.3f ms (%d calls)\n", s * 1000 / n, n }'

# (a) --help: no server, no configuration read.
t0=$(now)
for ((i = 0; i < help_calls; i++)); do "$jazari" --help >/dev/null; done
t1=$(now)
awk -v s="$(elapsed "$t0" "$t1")" -v n="$help_calls" \
  'BEGIN { printf "help_ms_per_call %.3f ms (%d calls)\n", s * 1000 / n, n }'

# (b) a jazarid as the other submit benchmarks start it (bench/submit/daemon.c): loopback, port
# 0, a temporary state folder, the 8-GPU fixture, no per-user pending limit; as root it keeps
# root (--user root) instead of dropping to a 'jazari' account this machine may not have.
args=(--listen 127.0.0.1:0 --state-dir "$state" --port-file "$state/port"
      --topology "$root/tests/fixtures/topologies/aws-g4dn-metal-8xT4.xml"
      --plugin-dir "$build/plugins" --max-pending 10000000 --kill-grace 1 --log-level warn)
[ "$(id -u)" -eq 0 ] && args+=(--user root)
"$jazarid" "${args[@]}" >"$state/jazarid.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  [ -s "$state/port" ] && [ -s "$state/admin.token" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$state/jazarid.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$state/port" ] || { echo "cli_startup: jazarid did not start" >&2; exit 1; }
export JAZARI_URL="http://127.0.0.1:$(cat "$state/port")"
export JAZARI_TOKEN="$(cat "$state/admin.token")"  # the admin token: exempt from rate limits
unset JAZARI_CONFIG JAZARI_TOKEN_FILE JAZARI_CA
echo "cli_startup: jazarid at $JAZARI_URL" >&2

# Times $submits serial runs of `jazari submit ARGS...` and prints "NAME rate".
submit_loop() {
  local name="$1"
  shift
  local t0 t1
  t0=$(now)
  for ((i = 0; i < submits; i++)); do "$jazari" submit "$@" >/dev/null; done
  t1=$(now)
  awk -v s="$(elapsed "$t0" "$t1")" -v n="$submits" -v name="$name" \
    'BEGIN { printf "%s %.1f /s (%d serial submissions, %.3f ms each)\n", name, n / s, n,
             s * 1000 / n }'
}

"$jazari" submit --gpus 0 -- true >/dev/null  # warm-up: the first commit creates files
# Jobs that start at once: each also starts a worker while the loop goes on.
submit_loop jazari_submits_per_s --gpus 0 -- true
# The same with a GPU each (the fixture's 8 T4s; each job ends at once and frees its GPU).
submit_loop jazari_gpu_submits_per_s --gpus 1 -- true
# Jobs that queue behind the first (all 8 GPUs each): the client and the durable commit only.
submit_loop jazari_queued_submits_per_s --gpus 8 -- sleep 600

# (c) Slurm's client on the same loop, when this machine has one.
if command -v sbatch >/dev/null 2>&1; then
  t0=$(now)
  for ((i = 0; i < submits; i++)); do sbatch --wrap true >/dev/null; done
  t1=$(now)
  awk -v s="$(elapsed "$t0" "$t1")" -v n="$submits" \
    'BEGIN { printf "sbatch_submits_per_s %.1f /s (%d serial submissions)\n", n / s, n }'
else
  echo "sbatch_submits_per_s - (Slurm is not installed)"
fi
