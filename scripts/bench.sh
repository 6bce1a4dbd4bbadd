#!/usr/bin/env bash
# make bench (issue 5): throughput across the lab's VXLAN overlay without a
# tracer, with vxtrace (filter miss, trace-all) and with tcpdump (NIC, every
# hop), in alternating blocks; BPF run time per program; lost events; the
# tracer's CPU and RSS. Prints a table and writes bench/results/latest.json.
#
# Defaults: 5 rounds of 10-s blocks (about 20 minutes). Extra flags come from
# the arguments or from BENCH_ARGS, e.g. the CI smoke run:
#   BENCH_ARGS="--blocks 1 --seconds 3" make bench
# A soak (P8): BENCH_ARGS="--soak 10m" make bench
# Needs root. Exits 1 only when a run is invalid, never on a missed goal.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}
[ -x bin/vxtrace ] || CGO_ENABLED=0 "$GO" build -o bin/vxtrace ./cmd/vxtrace
CGO_ENABLED=0 "$GO" build -o bin/vxbench ./bench
# exec: a ^C reaches the bench itself, which stops its children and removes
# the lab before it exits.
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
exec bin/vxbench --vxtrace bin/vxtrace ${BENCH_ARGS:-} "$@"
