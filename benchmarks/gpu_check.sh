#!/usr/bin/env bash
# The prepared GPU check (issue 11): build, verify, GPU tests, benchmarks and a profile in at
# most 8 minutes, on a GPU machine, from a fresh checkout. The work is done by
# benchmarks/gpu_check.py (see its docstring); this wrapper picks the interpreter and the
# folders and makes sure a logs tarball comes back even if the driver itself is killed.
#
#   OUT=bench-results GIT_COMMIT=<sha> bash benchmarks/gpu_check.sh   # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run                             # anywhere: plan + checks
#
# OUT (default bench-results/ in the repository) must be empty or hold a previous run's outputs;
# it receives at most 8 files: summary.json, bench.csv, speedup.png,
# ncu.csv (when Nsight Compute exists) and logs.tar.gz. GIT_COMMIT names the commit when the
# checkout has no .git. PYTHON overrides the interpreter. The driver's own limit is 480 s;
# HARD_LIMIT_S (default 540) stops it from outside if it hangs.
set -uo pipefail
if [ -n "${OUT:-}" ]; then OUT="$(realpath -m "${OUT}")"; fi  # relative to the caller's folder
cd "$(dirname "$0")/.."

PY="${PYTHON:-$(command -v python || command -v python3)}"
OUT="${OUT:-bench-results}"
if [ "${1:-}" = "--dry-run" ]; then
  exec "${PY}" benchmarks/gpu_check.py --out "${OUT}" "$@"
fi
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_logs.XXXXXX")"
mkdir -p "${OUT}"
rc=0
timeout -k 10 "${HARD_LIMIT_S:-540}" "${PY}" benchmarks/gpu_check.py --out "${OUT}" --logs "${LOGS}" "$@" || rc=$?
if [ ! -f "${OUT}/logs.tar.gz" ]; then  # the driver did not finish: keep what it logged
  echo "gpu_check.py ended with status ${rc} before packaging; packing its logs" >&2
  tar -czf "${OUT}/logs.tar.gz" -C "${LOGS}" . || true
fi
exit "${rc}"
