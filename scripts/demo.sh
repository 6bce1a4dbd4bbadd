#!/usr/bin/env bash
# The README's first command. On a node with an active Docker Swarm it traces
# a running overlay container; anywhere else it builds the two-node lab with
# a fault from the seed incidents (node 2's firewall drops UDP 4789), traces
# a ping across it, shows the verdict, and tears the lab down.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=vxdemo
fault=${FAULT:-node2-input-drop-4789}
# The binaries `make demo` builds; a test points these at its own builds.
vxtrace=${VXTRACE:-bin/vxtrace}
vxlab=${VXLAB:-bin/vxlab}

if command -v docker >/dev/null 2>&1 &&
	[ "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ]; then
	ctr=$(docker ps --filter network=ingress --format '{{.Names}}' 2>/dev/null | head -1)
	[ -n "$ctr" ] || ctr=$(docker ps --format '{{.Names}}' | head -1)
	if [ -n "$ctr" ]; then
		echo "== Docker Swarm found: tracing container $ctr for 10s"
		exec "$vxtrace" trace --container "$ctr" --duration 10s
	fi
fi

ready=$(mktemp -u /tmp/vxdemo-ready.XXXXXX)
cleanup() {
	rm -f "$ready"
	"$vxlab" down --prefix "$prefix" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$vxlab" down --prefix "$prefix" >/dev/null 2>&1 || true
"$vxlab" up --prefix "$prefix" --fault "$fault"
scope=()
for r in c1 ov1 n1 sw n2 ov2 c2; do scope+=(--netns "$prefix-$r"); done

# trace_pings N [flags]: traces N pings from c1 to c2. The pings start only
# once vxtrace says it is attached (its ready file): loading takes over a
# second on a cold machine, and a ping sent before that is never seen, which
# left a --count trace waiting for good. --duration bounds it all the same.
trace_pings() {
	local n=$1
	shift
	rm -f "$ready"
	(
		for _ in $(seq 600); do [ -e "$ready" ] && break; sleep 0.1; done
		"$vxlab" ping --prefix "$prefix" --count "$n" >/dev/null 2>&1 || true
	) &
	local pinger=$!
	# A vxtrace that failed has said why; its pinger need not wait for it.
	"$vxtrace" trace --ready-file "$ready" --dst 10.0.1.4 --proto icmp --count "$n" \
		--duration 90s --timeout 500ms "${scope[@]}" "$@" || kill "$pinger" 2>/dev/null || true
	wait
}

echo
echo "== c1 pings c2 across the overlay, with fault $fault switched on"
trace_pings 3

echo
echo "== the same ping with the fault switched off"
"$vxlab" fault "$fault" off --prefix "$prefix"
trace_pings 1 -q

if [ -t 0 ] && [ -t 1 ] && [ -z "${CI:-}" ] && [ "${NO_TUI:-}" = "" ]; then
	"$vxlab" fault "$fault" on --prefix "$prefix"
	echo
	echo "== the live view: press q to quit (the lab is torn down after)"
	sleep 1
	( while sleep 0.3; do "$vxlab" ping --prefix "$prefix" --count 1 >/dev/null 2>&1 || true; done ) &
	pinger=$!
	"$vxtrace" tui "${scope[@]}" --dst 10.0.1.4 || true
	kill "$pinger" 2>/dev/null || true
fi
