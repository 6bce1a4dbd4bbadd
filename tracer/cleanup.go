package tracer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxtrace/vxtrace/internal/procfs"
	"github.com/vxtrace/vxtrace/topo"
)

// A tcx link belongs to the file descriptor that made it, so the kernel
// detaches it when its process dies, however it dies. A legacy cls_bpf
// filter holds its program itself: a run killed with SIGKILL (or one that
// panicked off its main goroutine) leaves its filters on the hops, running
// a program whose ring buffer nobody reads. The next run removes them, here,
// before it attaches.
//
// What is removed is decided by two facts, never by guesses: the filter is
// named FilterName, and no live process holds its program. A filter of a
// vxtrace that is still running (a second trace of the same hops) has its
// program held by that process and stays. Everybody else's filters stay.

// sweepStale removes stale vxtrace filters from the hops about to be
// attached, logging each one, and returns what it removed. A failure to
// sweep a hop is logged and does not stop the trace: at worst a stale
// filter keeps running a program nobody reads, as before.
func (t *Tracer) sweepStale(hops []topo.Hop) []string {
	var held map[uint32]bool
	isHeld := func(id uint32) bool {
		if held == nil {
			held = procfs.HeldPrograms()
		}
		return held[id]
	}
	var removed []string
	for i := range hops {
		h := &hops[i]
		if h.Ifindex == 0 || h.NetNS.Path == "" {
			continue
		}
		r, err := sweepHop(h.NetNS.Path, int(h.Ifindex), isHeld)
		if len(r) > 0 {
			t.log.Warn("removed what a killed vxtrace left", "ifname", h.Ifname, "netns", nsLabel(h.NetNS),
				"removed", strings.Join(r, "; "))
		}
		for _, what := range r {
			removed = append(removed, fmt.Sprintf("%s on %s in %s", what, h.Ifname, nsLabel(h.NetNS)))
		}
		if err != nil {
			t.log.Warn("looking for leftover cls_bpf filters", "ifname", h.Ifname, "netns", nsLabel(h.NetNS), "err", err)
		}
	}
	return removed
}

// sweepHop removes the stale vxtrace filters of one interface, and its
// clsact qdisc when nothing else is left on it.
func sweepHop(nsPath string, ifindex int, isHeld func(uint32) bool) ([]string, error) {
	nh, err := netlinkHandle(nsPath)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	link, err := nh.LinkByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("finding interface %d: %w", ifindex, err)
	}
	if ok, err := hasClsact(nh, link); err != nil || !ok {
		return nil, err
	}
	var stale []*netlink.BpfFilter
	others := 0
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := nh.FilterList(link, parent)
		if err != nil {
			return nil, fmt.Errorf("listing filters: %w", err)
		}
		for _, f := range fs {
			if f.Attrs().Handle == 0 {
				continue // the dump's header of a filter chain, not a filter
			}
			bf, ok := f.(*netlink.BpfFilter)
			if !ok || bf.Name != FilterName || bf.Id == 0 || isHeld(uint32(bf.Id)) {
				others++
				continue
			}
			stale = append(stale, bf)
		}
	}
	var removed []string
	var errs []error
	for _, f := range stale {
		if err := nh.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("removing cls_bpf filter %s (program %d): %w", f.Name, f.Id, err))
			others++
			continue
		}
		removed = append(removed, fmt.Sprintf("%s cls_bpf filter %q (pref %d handle %#x, program %d)",
			direction(f.Parent), f.Name, f.Priority, f.Handle, f.Id))
	}
	// The qdisc goes only with the filters of a dead vxtrace, and only
	// when they were all that was on it.
	if len(removed) > 0 && others == 0 {
		if err := nh.QdiscDel(clsact(ifindex)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("removing clsact qdisc: %w", err))
		} else {
			removed = append(removed, "clsact qdisc")
		}
	}
	return removed, errors.Join(errs...)
}

func hasClsact(nh *netlink.Handle, link netlink.Link) (bool, error) {
	qs, err := nh.QdiscList(link)
	if err != nil {
		return false, fmt.Errorf("listing qdiscs: %w", err)
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			return true, nil
		}
	}
	return false, nil
}

// filtersOn counts the filters on an interface's clsact hooks, and how many
// of them are vxtrace's.
func filtersOn(nh *netlink.Handle, ifindex int) (all, ours int, err error) {
	link, err := nh.LinkByIndex(ifindex)
	if err != nil {
		return 0, 0, err
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := nh.FilterList(link, parent)
		if err != nil {
			return 0, 0, err
		}
		for _, f := range fs {
			if f.Attrs().Handle == 0 {
				continue
			}
			all++
			if bf, ok := f.(*netlink.BpfFilter); ok && bf.Name == FilterName {
				ours++
			}
		}
	}
	return all, ours, nil
}

func clsact(ifindex int) *netlink.Clsact {
	return &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
}

func direction(parent uint32) string {
	if parent == netlink.HANDLE_MIN_EGRESS {
		return "egress"
	}
	return "ingress"
}
