// Package leakcheck lists the kernel objects vxtrace creates (BPF programs,
// links, maps and legacy tc filters, by name) so that tests can assert that
// a run left none behind.
package leakcheck

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Program name prefixes of bpf/vxtrace.c (the kernel keeps 15 characters).
var progPrefixes = []string{"tp_netif_recei", "tp_net_dev_star", "tp_kfree_skb", "tp_consume_skb",
	"raw_netif_recei", "raw_net_dev_sta", "raw_kfree_skb", "raw_consume_skb",
	"tc_ingress", "tc_egress", "fentry_br_forwa", "kprobe_br_forwa"}

var mapNames = []string{"events", "tracked", "netns_filter", "hop_stats", "drop_stats", "stats", "scratch_map", "nest"}

func ours(name string) bool {
	for _, p := range progPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Objects lists vxtrace's live BPF programs, links and maps, plus any
// cls_bpf filter named "vxtrace" in the caller's namespace.
func Objects() ([]string, error) {
	var out []string
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, ebpf.ErrNotSupported) || err != nil {
			break
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // gone since we listed it
		}
		info, err := p.Info()
		p.Close()
		if err == nil && ours(info.Name) {
			out = append(out, "prog "+info.Name)
		}
	}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue
		}
		p, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			continue
		}
		pi, err := p.Info()
		p.Close()
		if err == nil && ours(pi.Name) {
			out = append(out, "link "+string(rune('0'+info.Type))+" "+pi.Name)
		}
	}
	var mid ebpf.MapID
	for {
		next, err := ebpf.MapGetNextID(mid)
		if err != nil {
			break
		}
		mid = next
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			continue
		}
		info, err := m.Info()
		m.Close()
		if err == nil && slices.Contains(mapNames, info.Name) {
			out = append(out, "map "+info.Name)
		}
	}
	if b, err := exec.Command("sh", "-c", "for d in $(ls /sys/class/net); do tc filter show dev $d ingress; tc filter show dev $d egress; done 2>/dev/null").Output(); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "vxtrace") {
				out = append(out, "tc filter "+strings.TrimSpace(line))
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// Snapshot records what exists before a test, so that objects owned by
// other tests running at the same time are not blamed on it.
func Snapshot(t testing.TB) []string {
	t.Helper()
	objs, err := Objects()
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// Check fails the test if objects exist now that did not before.
func Check(t testing.TB, before []string) {
	t.Helper()
	after, err := Objects()
	if err != nil {
		t.Fatal(err)
	}
	var leaked []string
	for _, o := range after {
		if i := slices.Index(before, o); i >= 0 {
			before = slices.Delete(before, i, i+1)
			continue
		}
		leaked = append(leaked, o)
	}
	if len(leaked) > 0 {
		t.Errorf("left behind: %v", leaked)
	}
}
