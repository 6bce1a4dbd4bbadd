package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxtrace/vxtrace/tracer"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	for _, tool := range []string{"ip", "bridge", "iptables", "nsenter", busybox} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// testPrefix is unique per test and per test binary, so labs of parallel
// tests and parallel packages never meet.
func testPrefix(short string) string {
	return fmt.Sprintf("lt%d%s", os.Getpid()%100000, short)
}

// leftovers is everything of a prefix that could outlive Down.
type leftovers struct {
	namespaces []string
	stateFile  bool
	rootRules  int // UDP 4789 rules in the test's own namespace
}

func snapshot(t *testing.T, prefix string) leftovers {
	t.Helper()
	names, err := labNamespaces(prefix)
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(StatePath(prefix))
	out, ierr := exec.Command("iptables-save").Output()
	if ierr != nil {
		t.Fatalf("iptables-save: %v", ierr)
	}
	return leftovers{
		namespaces: names,
		stateFile:  err == nil,
		rootRules:  strings.Count(string(out), fmt.Sprint(VXLANPort)),
	}
}

func assertGone(t *testing.T, prefix string, before leftovers, pids []int) {
	t.Helper()
	after := snapshot(t, prefix)
	if len(after.namespaces) > 0 {
		t.Errorf("namespaces left behind: %v", after.namespaces)
	}
	if after.stateFile {
		t.Errorf("state file %s left behind", StatePath(prefix))
	}
	if after.rootRules > before.rootRules {
		t.Errorf("iptables rules for %d in the host namespace: %d before, %d after", VXLANPort, before.rootRules, after.rootRules)
	}
	for _, pid := range pids {
		if processAlive(pid, "") {
			t.Errorf("process %d still running", pid)
		}
	}
}

// upLab builds a lab that is removed when the test ends, pass or fail.
func upLab(t *testing.T, cfg Config) *Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := Up(ctx, cfg, logf(t))
	t.Cleanup(func() {
		if err := Down(cfg.Prefix); err != nil {
			t.Errorf("Down(%s): %v", cfg.Prefix, err)
		}
	})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return l
}

func pids(l *Lab) []int {
	var out []int
	for _, p := range l.State().Processes {
		out = append(out, p.PID)
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestUpDown(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		layout     Layout
		c2IP       string
		vxlanRole  Role
		vxlanName  string
		roles      int
		sameSubnet bool
	}{
		{DockerLayout, "10.0.1.4", RoleOV1, "vxlan0", 7, true},
		{FlannelLayout, "10.0.2.4", RoleN1, "vxlan100", 5, false},
	} {
		t.Run(string(tc.layout), func(t *testing.T) {
			t.Parallel()
			prefix := testPrefix("ud" + string(tc.layout[0]))
			before := snapshot(t, prefix)
			if len(before.namespaces) > 0 || before.stateFile {
				t.Fatalf("prefix %s already in use: %+v", prefix, before)
			}
			l, err := Up(ctxT(t), Config{Prefix: prefix, Layout: tc.layout}, logf(t))
			t.Cleanup(func() { _ = Down(prefix) })
			if err != nil {
				t.Fatalf("Up: %v", err)
			}
			if got := len(l.Roles()); got != tc.roles {
				t.Errorf("%d roles, want %d: %v", got, tc.roles, l.Roles())
			}
			if got := l.ContainerIP(RoleC2); got != tc.c2IP {
				t.Errorf("c2 IP %s, want %s", got, tc.c2IP)
			}
			if r, name := l.VXLANDev(RoleN1); r != tc.vxlanRole || name != tc.vxlanName {
				t.Errorf("vxlan device of n1 is %s/%s, want %s/%s", r, name, tc.vxlanRole, tc.vxlanName)
			}
			// The vxlan device must exist where the accessor says, with
			// the lab's VNI and its UDP socket in the node namespace.
			r, name := l.VXLANDev(RoleN1)
			out, err := run(ctxT(t), "ip", "-n", l.NS(r), "-d", "link", "show", name)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, fmt.Sprintf("vxlan id %d local %s", VNI, N1IP)) {
				t.Errorf("%s/%s: %s", l.NS(r), name, out)
			}
			if tc.layout == DockerLayout && !strings.Contains(out, "link-netns "+l.NS(RoleN1)) {
				t.Errorf("vxlan0 was not created in the node namespace: %s", out)
			}
			udp, err := inNS(ctxT(t), l.NS(RoleN1), "cat", "/proc/net/udp")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(udp, fmt.Sprintf(":%04X", VXLANPort)) {
				t.Errorf("no UDP %d socket in %s:\n%s", VXLANPort, l.NS(RoleN1), udp)
			}

			ctx := ctxT(t)
			c1, dst := l.NSPath(RoleC1), l.ContainerIP(RoleC2)
			if err := Ping(ctx, c1, dst, 3, 0); err != nil {
				t.Errorf("healthy small ping: %v", err)
			}
			if err := Ping(ctx, c1, dst, 3, BigPayload); err != nil {
				t.Errorf("healthy full-MTU ping: %v", err)
			}
			if err := Ping(ctx, l.NSPath(RoleC2), l.ContainerIP(RoleC1), 2, 0); err != nil {
				t.Errorf("healthy ping back: %v", err)
			}
			if err := TCPConnect(ctx, c1, dst, ListenPort); err != nil {
				t.Errorf("healthy TCP connect: %v", err)
			}
			st, err := Status(prefix)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Healthy() || len(st.Namespaces) != tc.roles {
				t.Errorf("status: %+v", st)
			}

			ps := pids(l)
			if len(ps) == 0 {
				t.Error("no listener process recorded")
			}
			if err := l.Down(); err != nil {
				t.Fatalf("Down: %v", err)
			}
			assertGone(t, prefix, before, ps)
			if err := Down(prefix); err != nil {
				t.Errorf("second Down: %v", err)
			}
			if st, err := Status(prefix); err != nil || st.Exists() {
				t.Errorf("status after Down: %+v, %v", st, err)
			}
		})
	}
}

// probeFails sends the fault's probe and checks it fails the way the fault
// makes it fail: lost echoes, or a refused (RST) connection.
func probeFails(t *testing.T, l *Lab, fi FaultInfo) {
	t.Helper()
	err := l.Send(ctxT(t), fi.Probe)
	switch {
	case err == nil:
		t.Errorf("%s on: probe %+v got through", fi.Fault, fi.Probe)
	case fi.Probe.Kind == ProbeTCP && !errors.Is(err, syscall.ECONNREFUSED):
		t.Errorf("%s on: want connection refused, got %v", fi.Fault, err)
	case fi.Probe.Kind == ProbePing && !errors.Is(err, ErrLoss):
		t.Errorf("%s on: want lost echoes, got %v", fi.Fault, err)
	}
}

func TestFaults(t *testing.T) {
	needRoot(t)
	for _, layout := range Layouts() {
		t.Run(string(layout), func(t *testing.T) {
			t.Parallel()
			l := upLab(t, Config{Prefix: testPrefix("f" + string(layout[0])), Layout: layout})
			for _, fi := range FaultTable() {
				t.Run(string(fi.Fault), func(t *testing.T) {
					if err := l.Send(ctxT(t), fi.Probe); err != nil {
						t.Fatalf("before the fault: %v", err)
					}
					if err := l.SetFault(fi.Fault, true); err != nil {
						t.Fatal(err)
					}
					if got := l.Faults(); len(got) != 1 || got[0] != fi.Fault {
						t.Errorf("faults on: %v", got)
					}
					probeFails(t, l, fi)
					if fi.Fault == FaultUnderlayMTU {
						// Only what does not fit is lost.
						if err := l.Send(ctxT(t), smallPing); err != nil {
							t.Errorf("small ping with %s on: %v", fi.Fault, err)
						}
					}
					exp, err := l.Expect(fi.Fault)
					if err != nil {
						t.Fatal(err)
					}
					if err := ip(ctxT(t), exp.NS, "link", "show", exp.Ifname); err != nil {
						t.Errorf("expected hop %s/%s does not exist: %v", exp.NS, exp.Ifname, err)
					}
					// SetFault is idempotent, and the state file follows it.
					if err := l.SetFault(fi.Fault, true); err != nil {
						t.Errorf("second on: %v", err)
					}
					if st, _ := readState(l.Prefix()); st == nil || len(st.Faults) != 1 {
						t.Errorf("state file faults: %+v", st)
					}
					if err := l.SetFault(fi.Fault, false); err != nil {
						t.Fatal(err)
					}
					if err := l.Send(ctxT(t), fi.Probe); err != nil {
						t.Errorf("after switching %s off: %v", fi.Fault, err)
					}
					if got := l.Faults(); len(got) != 0 {
						t.Errorf("faults after off: %v", got)
					}
				})
			}
		})
	}
}

// Faults given to Up are on from the start, and Open sees them.
func TestUpWithFaults(t *testing.T) {
	needRoot(t)
	prefix := testPrefix("uf")
	l := upLab(t, Config{Prefix: prefix, Faults: []Fault{FaultWrongVNI, FaultMissingFDB}})
	ctx := ctxT(t)
	if err := l.Send(ctx, smallPing); !errors.Is(err, ErrLoss) {
		t.Fatalf("ping with wrong-vni and missing-fdb on: %v", err)
	}
	o, err := Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Faults(); len(got) != 2 {
		t.Errorf("opened lab's faults: %v", got)
	}
	if err := o.SetFault(FaultMissingFDB, false); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(ctx, smallPing); !errors.Is(err, ErrLoss) {
		t.Errorf("ping with only wrong-vni on: %v", err)
	}
	// Rebuilding vxlan0 for the VNI must not bring back a missing FDB
	// entry, nor lose one that is there.
	if err := o.SetFault(FaultWrongVNI, false); err != nil {
		t.Fatal(err)
	}
	if err := o.Send(ctx, smallPing); err != nil {
		t.Errorf("ping with no faults: %v", err)
	}
}

// Rebuilding node 1's vxlan device must not bring back a neighbour entry
// that missing-neigh took away, and switching the fault off afterwards must.
func TestRebuildKeepsMissingNeigh(t *testing.T) {
	needRoot(t)
	for _, layout := range Layouts() {
		t.Run(string(layout), func(t *testing.T) {
			t.Parallel()
			l := upLab(t, Config{Prefix: testPrefix("rn" + string(layout[0])), Layout: layout, Faults: []Fault{FaultMissingNeigh}})
			if err := l.rebuildVTEP(ctxT(t), RoleN1); err != nil {
				t.Fatal(err)
			}
			if err := l.Send(ctxT(t), smallPing); !errors.Is(err, ErrLoss) {
				t.Errorf("ping with missing-neigh on after a rebuild: %v", err)
			}
			if err := l.SetFault(FaultMissingNeigh, false); err != nil {
				t.Fatal(err)
			}
			if err := l.Send(ctxT(t), smallPing); err != nil {
				t.Errorf("ping after switching missing-neigh off: %v", err)
			}
		})
	}
}

func TestUpFailureLeavesNothing(t *testing.T) {
	needRoot(t)
	for i, step := range []string{"underlay", "overlay", "listener", "fault"} {
		t.Run(step, func(t *testing.T) {
			prefix := testPrefix(fmt.Sprintf("fail%d", i))
			before := snapshot(t, prefix)
			injected := errors.New("injected failure")
			var running []int // processes in the lab when it fails
			testHookStep = func(s string) error {
				if !strings.Contains(s, step) {
					return nil
				}
				for _, r := range allRoles {
					out, _ := run(context.Background(), "ip", "netns", "pids", NSName(prefix, r))
					for _, f := range strings.Fields(out) {
						var pid int
						fmt.Sscan(f, &pid)
						running = append(running, pid)
					}
				}
				return injected
			}
			t.Cleanup(func() { testHookStep = nil; _ = Down(prefix) })
			l, err := Up(ctxT(t), Config{Prefix: prefix, Faults: []Fault{FaultSwitchDrop}}, logf(t))
			if !errors.Is(err, injected) {
				t.Fatalf("Up = %v, %v; want the injected failure", l, err)
			}
			if (step == "listener" || step == "fault") && len(running) == 0 {
				t.Error("no listener was running when Up failed")
			}
			assertGone(t, prefix, before, running)
		})
	}
}

func TestUpTwice(t *testing.T) {
	needRoot(t)
	prefix := testPrefix("tw")
	l := upLab(t, Config{Prefix: prefix})
	_, err := Up(ctxT(t), Config{Prefix: prefix, Layout: FlannelLayout}, logf(t))
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Up: %v", err)
	}
	// The refused Up must not have touched the first lab.
	if err := l.Send(ctxT(t), smallPing); err != nil {
		t.Errorf("first lab after a refused Up: %v", err)
	}
	if st, err := Status(prefix); err != nil || !st.Healthy() || st.State.Layout != DockerLayout {
		t.Errorf("status: %+v, %v", st, err)
	}
}

// Down must work from the names alone (a crashed Up leaves no full state),
// and only on its own prefix.
func TestDownWithoutState(t *testing.T) {
	needRoot(t)
	prefix := testPrefix("ns")
	before := snapshot(t, prefix)
	l := upLab(t, Config{Prefix: prefix, Layout: FlannelLayout})
	ps := pids(l)
	// Another lab whose prefix extends this one must survive.
	other := NSName(prefix+"-x", RoleSW)
	if err := ip(ctxT(t), "", "netns", "add", other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleteNS(other) })
	if err := os.Remove(StatePath(prefix)); err != nil {
		t.Fatal(err)
	}
	if err := Down(prefix); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, prefix, before, ps)
	if !nsExists(other) {
		t.Errorf("Down(%s) removed %s", prefix, other)
	}
}

func TestBuildUnderlay(t *testing.T) {
	needRoot(t)
	prefix := testPrefix("ul")
	ctx := ctxT(t)
	u, err := BuildUnderlay(ctx, prefix)
	t.Cleanup(func() { _ = Down(prefix) })
	if err != nil {
		t.Fatal(err)
	}
	if err := Ping(ctx, u.NS(RoleN1), N2IP, 2, 1472); err != nil {
		t.Errorf("n1 -> n2 across sw: %v", err)
	}
	if _, err := BuildUnderlay(ctx, prefix); err == nil {
		t.Error("second BuildUnderlay on the same prefix succeeded")
	}
	if err := u.Teardown(); err != nil {
		t.Fatal(err)
	}
	if names, _ := labNamespaces(prefix); len(names) > 0 {
		t.Errorf("left: %v", names)
	}
}

func TestDownUnknownPrefix(t *testing.T) {
	needRoot(t)
	if err := Down(testPrefix("nothing")); err != nil {
		t.Errorf("Down of a lab that is not there: %v", err)
	}
}

func TestFaultTable(t *testing.T) {
	seen := map[Fault]bool{}
	for _, fi := range FaultTable() {
		if seen[fi.Fault] {
			t.Errorf("%s twice", fi.Fault)
		}
		seen[fi.Fault] = true
		if fi.Description == "" || fi.Reason == "" || fi.Location == "" || fi.Verdict != "dropped" {
			t.Errorf("%s: incomplete: %+v", fi.Fault, fi)
		}
		for _, l := range Layouts() {
			if h, ok := fi.Hop[l]; !ok || h.Ifname == "" || h.Role == "" {
				t.Errorf("%s: no hop for %s", fi.Fault, l)
			}
		}
		if got, err := LookupFault(string(fi.Fault)); err != nil || got.Fault != fi.Fault {
			t.Errorf("LookupFault(%s) = %v, %v", fi.Fault, got.Fault, err)
		}
	}
	// Codes are the running kernel's: the tracer, reading its BTF on its
	// own, must give each code back the fault's reason name.
	if names, err := tracer.NewNames(); err == nil && names.ReasonNames() {
		for _, fi := range FaultTable() {
			if got := names.DropReason(fi.ReasonCode); got != fi.Reason {
				t.Errorf("%s: code %d is %s on this kernel, want %s", fi.Fault, fi.ReasonCode, got, fi.Reason)
			}
		}
	} else {
		t.Logf("no drop reason names on this kernel (%v): codes not checked", err)
	}
	for _, f := range []Fault{FaultSwitchDrop, FaultNode2InputDrop, FaultUnderlayMTU, FaultMissingFDB, FaultMissingNeigh, FaultWrongVNI, FaultNoListener} {
		if !seen[f] {
			t.Errorf("%s missing from the table", f)
		}
	}
	if _, err := LookupFault("nope"); err == nil {
		t.Error("unknown fault accepted")
	}
	// The table handed out is a copy.
	FaultTable()[0].Hop[DockerLayout] = HopRef{}
	if FaultTable()[0].Hop[DockerLayout].Ifname == "" {
		t.Error("FaultTable returned shared maps")
	}
}

func TestParseLayoutAndPrefix(t *testing.T) {
	if l, err := ParseLayout(""); err != nil || l != DockerLayout {
		t.Errorf(`ParseLayout("") = %v, %v`, l, err)
	}
	if _, err := ParseLayout("calico"); err == nil {
		t.Error("unknown layout accepted")
	}
	for _, p := range []string{"vxlab", "t1", "a-b-c"} {
		if err := checkPrefix(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"", "-x", "A", "x/y", "x y", strings.Repeat("a", 40)} {
		if err := checkPrefix(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
	if _, err := Up(context.Background(), Config{Prefix: "bad/prefix"}, nil); err == nil {
		t.Error("Up accepted a bad prefix")
	}
}

func logf(t *testing.T) func(string) { return func(s string) { t.Log(s) } }

// TestNoListenerRightAfterConnect switches the listener off while the
// connection just made may still be in busybox's hands (a vforked child
// holds the listening socket until it execs); no probe may get through
// once SetFault returns.
func TestNoListenerRightAfterConnect(t *testing.T) {
	needRoot(t)
	l := upLab(t, Config{Prefix: testPrefix("nl"), Layout: FlannelLayout})
	probe := Probe{Kind: ProbeTCP, Port: ListenPort}
	for i := 0; i < 30; i++ {
		if err := l.Send(ctxT(t), probe); err != nil {
			t.Fatalf("round %d, listener on: %v", i, err)
		}
		if err := l.SetFault(FaultNoListener, true); err != nil {
			t.Fatal(err)
		}
		if err := l.Send(ctxT(t), probe); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("round %d, listener off: want connection refused, got %v", i, err)
		}
		if err := l.SetFault(FaultNoListener, false); err != nil {
			t.Fatal(err)
		}
	}
}
