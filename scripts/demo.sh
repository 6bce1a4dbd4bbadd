#!/usr/bin/env bash
# The README's first command. On a node with an active Docker Swarm it traces
# a running overlay container; anywhere else it builds the two-node lab with
# a fault from the seed incidents (node 2's firewall drops UDP 4789), traces
# a ping across it, shows the verdict, and tears the lab down.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=vxdemo
fault=${FAULT:-node2-input-drop-4789}

if command -v docker >/dev/null 2>&1 &&
	[ "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ]; then
	ctr=$(docker ps --filter network=ingress --format '{{.Names}}' 2>/dev/null | head -1)
	[ -n "$ctr" ] || ctr=$(docker ps --format '{{.Names}}' | head -1)
	if [ -n "$ctr" ]; then
		echo "== Docker Swarm found: tracing container $ctr for 10s"
		exec bin/vxtrace trace --container "$ctr" --duration 10s
	fi
fi

cleanup() { bin/vxlab down --prefix "$prefix" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
bin/vxlab down --prefix "$prefix" >/dev/null 2>&1 || true
bin/vxlab up --prefix "$prefix" --fault "$fault"
scope=()
for r in c1 ov1 n1 sw n2 ov2 c2; do scope+=(--netns "$prefix-$r"); done

echo
echo "== c1 pings c2 across the overlay, with fault $fault switched on"
( sleep 1; bin/vxlab ping --prefix "$prefix" --count 3 >/dev/null 2>&1 || true ) &
bin/vxtrace trace --dst 10.0.1.4 --proto icmp --count 3 --timeout 500ms "${scope[@]}" || true
wait

echo
echo "== the same ping with the fault switched off"
bin/vxlab fault "$fault" off --prefix "$prefix"
( sleep 1; bin/vxlab ping --prefix "$prefix" --count 1 >/dev/null 2>&1 || true ) &
bin/vxtrace trace -q --dst 10.0.1.4 --proto icmp --count 1 --timeout 500ms "${scope[@]}" || true
wait

if [ -t 0 ] && [ -t 1 ] && [ -z "${CI:-}" ] && [ "${NO_TUI:-}" = "" ]; then
	bin/vxlab fault "$fault" on --prefix "$prefix"
	echo
	echo "== the live view: press q to quit (the lab is torn down after)"
	sleep 1
	( while sleep 0.3; do bin/vxlab ping --prefix "$prefix" --count 1 >/dev/null 2>&1 || true; done ) &
	pinger=$!
	bin/vxtrace tui "${scope[@]}" --dst 10.0.1.4 || true
	kill "$pinger" 2>/dev/null || true
fi
