// Package leakcheck finds kernel objects that a vxtrace run left behind: BPF
// programs of vxtrace's that no live process holds (so nothing will ever
// free them: pinned, or attached by a legacy hook), and vxtrace's legacy
// cls_bpf filters in the given namespaces. Objects held by a running process
// (another test's tracer) are not leaks, which keeps the check exact while
// other tests run.
package leakcheck

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vxtrace/vxtrace/internal/procfs"
)

// Program name prefixes of bpf/vxtrace.c (the kernel keeps 15 characters).
var progPrefixes = []string{"tp_netif_recei", "tp_net_dev_star", "tp_kfree_skb", "tp_consume_skb",
	"raw_netif_recei", "raw_net_dev_sta", "raw_kfree_skb", "raw_consume_skb",
	"tc_ingress", "tc_egress", "fentry_br_forwa", "kprobe_br_forwa"}

func ours(name string) bool {
	for _, p := range progPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Orphans lists vxtrace programs that no process holds.
func Orphans() []string {
	held := procfs.HeldPrograms()
	var out []string
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			break
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, err := p.Info()
		p.Close()
		if err != nil || !ours(info.Name) || held[uint32(id)] {
			continue
		}
		// Re-check: the holder may have opened it after the scan.
		if !procfs.HeldPrograms()[uint32(id)] {
			out = append(out, "prog "+info.Name+" #"+strconv.Itoa(int(id)))
		}
	}
	return out
}

// Filters lists cls_bpf filters named vxtrace* in the namespaces at paths
// ("" is the caller's own).
func Filters(nsPaths ...string) []string {
	var out []string
	for _, path := range nsPaths {
		var h *netlink.Handle
		var err error
		if path == "" {
			h, err = netlink.NewHandle()
		} else {
			ns, err2 := netns.GetFromPath(path)
			if err2 != nil {
				continue // the namespace is gone, and its filters with it
			}
			h, err = netlink.NewHandleAt(ns)
			ns.Close()
		}
		if err != nil {
			continue
		}
		links, _ := h.LinkList()
		for _, l := range links {
			for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
				fs, _ := h.FilterList(l, parent)
				for _, f := range fs {
					if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, "vxtrace") {
						out = append(out, "tc filter "+bf.Name+" on "+l.Attrs().Name+" in "+path)
					}
				}
			}
		}
		h.Close()
	}
	return out
}

// Snapshot records the leaks that already exist, so that a test is not
// blamed for another's.
func Snapshot(t testing.TB, nsPaths ...string) []string {
	t.Helper()
	return append(Orphans(), Filters(nsPaths...)...)
}

// Check fails the test if leaks exist now that did not before. The kernel
// frees a program after an RCU grace period once its last reference is
// gone, so an object of a process that just exited may still be listed for
// a moment: only what is still there after a short wait is a leak.
func Check(t testing.TB, before []string, nsPaths ...string) {
	t.Helper()
	var leaked []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		leaked = leaked[:0]
		for _, o := range append(Orphans(), Filters(nsPaths...)...) {
			if !slices.Contains(before, o) {
				leaked = append(leaked, o)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(leaked) > 0 {
		t.Errorf("left behind: %v", leaked)
	}
}
