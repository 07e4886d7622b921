#!/usr/bin/env bash
# The server benchmarks of docs/performance.md and the replay and proxy benchmarks of
# issue #5, each side by side with the reference in the same run:
#   1. fan-out: delivered frames/s, sim vs the Node.js ws replica (C = 1000 and 100),
#      as the issue asks (W = 1.5 s), then in steady state (W = 8 s, C = 1000) with sim
#      at 20,000 msg/s (50us) and 1,000 msg/s (1ms);
#   2. lateness at the client, 1,000 msg/s to 100 clients, sim vs bun vs node
#      (bench/lateness.py; issue #14 replaced the in-server figure);
#   3. memory per idle connection, 5,000 connections, sim vs node;
#   4. sim replay to one client: frames/s at --speed max and timing error at 1x, each
#      beside a plain websockets server sending the same frames (bench/replay.py);
#   5. the recording proxy: latency it adds and frames lost at 20,000 frames/s, direct
#      vs through `sim record --upstream` (bench/proxy.py);
#   6. issue #14: the sustainable fan-out sweep (C = 100, 1,000, 10,000; sim, node, bun;
#      lateness at the client, overload rows), C10k at 1 msg/s, idle CPU at the
#      dashboard's rates (bench/sweep.py, c10k.py, idle_cpu.py). SIM_SERVER='key = value'
#      adds one [server] line to sim's scenarios in the sweep and C10k.
# Takes about 25 minutes on 2 cores. Run it on a quiet machine: the load client and the
# server share the two cores, and every table shows how busy other processes were.
#
#   bench/run_all.sh                  # everything; tables to stdout and to $OUT/*.md
#   REPS=5 OUT=/tmp/b bench/run_all.sh
#
# Knobs: REPS [3], OUT [/tmp/sim-bench-<UTC stamp>], ANCHORS_DIR [/tmp/sim-anchors; made
# with /work/shared/anchors/setup.sh when missing], SWEEP_REPS [1], SIM_SERVER [none].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
REPS=${REPS:-3}
OUT=${OUT:-${TMPDIR:-/tmp}/sim-bench-$(date -u +%Y%m%dT%H%M%SZ)}
export ANCHORS_DIR=${ANCHORS_DIR:-${TMPDIR:-/tmp}/sim-anchors}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}  # the #14 benches run `python -m simulator`
SIM_ARGS=()
[ -z "${SIM_SERVER:-}" ] || SIM_ARGS=(--sim-server "$SIM_SERVER")
mkdir -p "$OUT"
T0=$(date +%s)
echo "# sim server benchmarks -> $OUT (reps=$REPS, anchors=$ANCHORS_DIR)" >&2

step() {  # step NAME TIMEOUT_S CMD...
  local name=$1 limit=$2
  shift 2
  echo "# [$(($(date +%s) - T0)) s] $name: $*" >&2
  local rc=0
  timeout -k 10 "$limit" "$@" --out "$OUT/raw.jsonl" >"$OUT/$name.md" || rc=$?
  [ "$rc" -eq 0 ] || echo "# $name failed or timed out (rc=$rc)" >&2
  cat "$OUT/$name.md"
  echo
}

step fanout 400 "$PY" bench/fanout.py --reps "$REPS" --conns 1000,100 -d 4 -w 1.5 --quiet-max-s 3
step fanout-steady 400 "$PY" bench/fanout.py --reps "$REPS" --conns 1000 -d 4 -w 8 \
  --sim-every 50us,1ms --quiet-max-s 3
step lateness 300 "$PY" bench/lateness.py --reps "$REPS" --seconds 10 "${SIM_ARGS[@]}"
step idle-memory 300 "$PY" bench/idle_memory.py --reps 2 -n 5000
step replay 400 "$PY" bench/replay.py --reps "$REPS" --quiet-max-s 3
step proxy 400 "$PY" bench/proxy.py --reps "$REPS" --quiet-max-s 3
step sweep 1200 "$PY" bench/sweep.py --reps "${SWEEP_REPS:-1}" "${SIM_ARGS[@]}"
step c10k 400 "$PY" bench/c10k.py "${SIM_ARGS[@]}"
step idle-cpu 300 "$PY" bench/idle_cpu.py

echo "# done in $(($(date +%s) - T0)) s; raw JSON lines in $OUT/raw.jsonl" >&2
