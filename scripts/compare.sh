#!/usr/bin/env bash
# make compare BASE=<git revision>: the BPF cost of the working tree's vxtrace
# (B, bin/vxtrace, built by make build from the committed BPF objects: run
# make generate first after a change to bpf/) against BASE's (A), both
# attached at once to one flood across the lab, both orders in every round.
# Prints B's BPF run time over A's per protocol and mode; see bench/compare.go
# for why a change is measured this way and not by throughput ratios.
#
#   make compare BASE=HEAD~1
#   BENCH_ARGS="--protos udp --modes p1 --blocks 3" make compare BASE=main
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}
if [ -z "${BASE:-}" ]; then
	echo "compare: say which revision to compare against: make compare BASE=<git revision>" >&2
	exit 2
fi
rev=$(git rev-parse --verify --quiet "$BASE^{commit}") || {
	echo "compare: BASE=$BASE is not a revision of this repository" >&2
	exit 2
}
tmp=$(mktemp -d)
cleanup() {
	git worktree remove --force "$tmp/src" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
echo "compare: building A from $BASE (${rev:0:12})"
git worktree add -q --detach "$tmp/src" "$rev"
(cd "$tmp/src" && CGO_ENABLED=0 "$GO" build -o "$tmp/vxtrace-base" ./cmd/vxtrace)
CGO_ENABLED=0 "$GO" build -o bin/vxbench ./bench
# Not exec: the trap removes the worktree. A ^C reaches vxbench too, which
# stops its tracers and removes the lab before it exits.
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
bin/vxbench --vxtrace "$tmp/vxtrace-base" --compare bin/vxtrace --modes p1,p2 ${BENCH_ARGS:-} "$@"
