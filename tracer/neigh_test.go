package tracer

import (
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/vxtrace/vxtrace/internal/nsexec"
	"github.com/vxtrace/vxtrace/topo"
)

// TestNeighWait: a packet the kernel parks while ARP for its next hop goes
// unanswered gives a neigh event on the device, naming that address, and
// later its NEIGH_FAILED drop under the same fingerprint, with both kinds
// of tracepoint. The packet is sent by the node itself, so the neigh event
// is its first sighting: it must match the filter on its own headers.
func TestNeighWait(t *testing.T) {
	requireRoot(t)
	names, err := NewNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  Config
		tp   string
	}{
		{"tp_btf", Config{}, "tp_btf"},
		{"raw_tp", Config{ForceRawTP: true}, "raw_tp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newVethPair(t)
			// On A's link and owned by no one: B does not answer ARP
			// for it. One probe 100 ms long fails it quickly.
			ghost := netip.MustParseAddr("192.168.78.9")
			ipCmd(t, "-n", p.nsA.Name, "route", "add", ghost.String()+"/32", "dev", p.hopA.Ifname)
			sysctl := exec.Command("ip", "netns", "exec", p.nsA.Name, "sysctl", "-qw",
				"net.ipv4.neigh."+p.hopA.Ifname+".mcast_solicit=1",
				"net.ipv4.neigh."+p.hopA.Ifname+".retrans_time_ms=100")
			if out, err := sysctl.CombinedOutput(); err != nil {
				t.Fatalf("sysctl: %v: %s", err, out)
			}
			cfg := c.cfg
			cfg.Dst = netip.PrefixFrom(ghost, 32)
			cfg.Proto = 17
			cfg.NetNS = []uint32{p.nsA.Inode, p.nsB.Inode}
			tr, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if f := tr.Features(); f.Tracepoints != c.tp {
				t.Fatalf("tracepoints %q, want %q", f.Tracepoints, c.tp)
			}
			if err := tr.AttachHops([]topo.Hop{p.hopA, p.hopB}); err != nil {
				t.Fatal(err)
			}
			events, stop := collect(t, tr)
			defer stop()
			err = nsexec.Do(p.nsA.Path, func() error {
				conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: ghost.AsSlice(), Port: 9})
				if err != nil {
					return err
				}
				defer conn.Close()
				_, err = conn.Write([]byte("vxtrace neigh test"))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}

			var wait, drop *Event
			deadline := time.Now().Add(5 * time.Second)
			for drop == nil && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				for _, e := range events() {
					switch e.Hook {
					case HookNeigh:
						wait = &e
					case HookDrop:
						drop = &e
					}
				}
			}
			stop()
			if wait == nil {
				t.Fatalf("no neigh event; events: %+v", events())
			}
			if wait.NetNS != p.nsA.Inode || wait.Ifindex != p.hopA.Ifindex || wait.NextHop() != ghost {
				t.Errorf("neigh event at %d/%d for %v, want %d/%d for %v",
					wait.NetNS, wait.Ifindex, wait.NextHop(), p.nsA.Inode, p.hopA.Ifindex, ghost)
			}
			if wait.Inner.Dst != ghost || wait.Flags&FlagNew == 0 {
				t.Errorf("neigh event: inner %+v flags %#x: want the packet's headers, as its first sighting", wait.Inner, wait.Flags)
			}
			if drop == nil {
				t.Fatalf("no drop within 5 s of a neighbour that cannot resolve; events: %+v", events())
			}
			if got := names.DropReason(drop.Reason); drop.FP != wait.FP || got != "NEIGH_FAILED" || drop.Ifindex != p.hopA.Ifindex {
				t.Errorf("drop %s at ifindex %d fp %x; want NEIGH_FAILED at %d fp %x (the parked packet)",
					got, drop.Ifindex, drop.FP, p.hopA.Ifindex, wait.FP)
			}
			if d := time.Duration(drop.Time - wait.Time); d < 50*time.Millisecond {
				t.Errorf("drop %v after the wait began: the packet was not parked", d)
			}
		})
	}
}
