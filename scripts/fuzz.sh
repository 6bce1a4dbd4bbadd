#!/usr/bin/env bash
# Runs each Go fuzz target (found by name) for a bounded time, so CI keeps
# the targets and their committed seed corpora working.
set -euo pipefail
fuzztime=${1:-150000x}
cd "$(dirname "$0")/.."
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	pkg=./$(dirname "${f#./}")
	for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
		echo "fuzz $pkg $target ($fuzztime)"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >/tmp/vxtrace-fuzz.log 2>&1 || { cat /tmp/vxtrace-fuzz.log; exit 1; }
	done
done
echo "fuzz: all targets passed"
