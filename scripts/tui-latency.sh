#!/usr/bin/env bash
# Measures the live TUI's key-press-to-screen latency under a flood of
# matching traffic (issue 4): the lab, iperf3 UDP 64-byte packets c1 -> c2
# (every one traced), the TUI in tmux; `p` is pressed N times and the time
# until the status bar flips between LIVE and PAUSED is measured by polling
# tmux capture-pane (a few ms of resolution). Needs root; leaves nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-30}
prefix=vxtl$$
session=vxtl$$
cleanup() {
	tmux kill-session -t "$session" 2>/dev/null || true
	pkill -f "iperf3 -s -p 5299" 2>/dev/null || true
	bin/vxlab down --prefix "$prefix" >/dev/null 2>&1 || true
}
trap cleanup EXIT
bin/vxlab up --prefix "$prefix" >/dev/null
scope=()
for r in c1 ov1 n1 sw n2 ov2 c2; do scope+=(--netns "$prefix-$r"); done
ip netns exec "$prefix-c2" iperf3 -s -p 5299 -D
sleep 0.5
tmux new-session -d -s "$session" -x 160 -y 45 "bin/vxtrace tui ${scope[*]} --dst 10.0.1.4 --proto udp"
sleep 3
ip netns exec "$prefix-c1" iperf3 -c 10.0.1.4 -p 5299 -u -b 0 -l 64 -t 60 >/dev/null 2>&1 &
sleep 3
python3 - "$session" "$n" <<'PY'
import subprocess, sys, time
session, n = sys.argv[1], int(sys.argv[2])
def screen():
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
def state():
    s = screen()
    return "PAUSED" if "PAUSED" in s else ("LIVE" if "LIVE" in s else "?")
lat = []
for i in range(n):
    before = state()
    t0 = time.monotonic()
    subprocess.run(["tmux", "send-keys", "-t", session, "p"])
    while state() == before:
        if time.monotonic() - t0 > 5:
            print("no screen change within 5s"); sys.exit(1)
    lat.append((time.monotonic() - t0) * 1000)
    time.sleep(0.3)
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
ev = [l for l in screen().splitlines() if "events/s" in l]
print(f"key -> screen, {n} presses under flood: p50 {p(0.5):.1f} ms  p90 {p(0.9):.1f} ms  p99/max {lat[-1]:.1f} ms")
print("status bar:", ev[0].strip() if ev else "?")
PY
