package journey

import "github.com/vxtrace/vxtrace/topo"

// Step directions, as tracer.Hook.String() spells them.
const (
	DirRx      = "rx"
	DirTx      = "tx"
	DirDrop    = "drop"
	DirConsume = "consume"
	DirFwd     = "fwd"
	DirTCIn    = "tc_in"
	DirTCOut   = "tc_out"
	DirNeigh   = "neigh"
)

// inbound and outbound treat a TC sighting like the tracepoint next to it:
// TC ingress runs right after netif_receive_skb and TC egress right before
// the device's xmit, so when only the TC probe saw a hop the verdict does
// not change.
func inbound(dir string) bool  { return dir == DirRx || dir == DirTCIn }
func outbound(dir string) bool { return dir == DirTx || dir == DirTCOut }

// Decide is the verdict rule. steps must be in time order. It returns the
// verdict and the index of the step that decided it (the step whose hop is
// the packet's last hop), or -1 when there are no steps.
//
//   - dropped: the last step the tracer saw is a drop. The packet's final
//     fate wins: a SYN that reached the container and was then dropped
//     there (no socket, the container's firewall) was not delivered;
//   - delivered: a step received the packet at a container hop, or a
//     consume step directly follows a receive (a local socket took it);
//   - dropped: otherwise, if any step is a drop (the last one decides; a
//     dropped clone of a packet that went on elsewhere);
//   - left_node: otherwise, if the last step that is not a consume sent the
//     packet out of an underlay NIC (the consume is the NIC freeing it after
//     transmission);
//   - vanished: anything else; the last step that is not a consume decides.
func Decide(steps []Step) (Verdict, int) {
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].Derived {
			continue
		}
		if steps[i].Dir == DirDrop {
			return Dropped, i
		}
		break
	}
	for i := range steps {
		s := &steps[i]
		if inbound(s.Dir) && s.Kind == topo.KindContainer {
			return Delivered, i
		}
		if s.Dir == DirConsume {
			if p := prevObserved(steps, i); p >= 0 && inbound(steps[p].Dir) {
				return Delivered, p
			}
		}
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].Dir == DirDrop {
			return Dropped, i
		}
	}
	last := len(steps) - 1
	for i := last; i >= 0; i-- {
		if steps[i].Dir != DirConsume {
			last = i
			break
		}
	}
	if last >= 0 && outbound(steps[last].Dir) && steps[last].Kind == topo.KindNIC {
		return LeftNode, last
	}
	return Vanished, last
}

// prevObserved is the index of the last step before i that the tracer saw
// (not derived), or -1.
func prevObserved(steps []Step, i int) int {
	for j := i - 1; j >= 0; j-- {
		if !steps[j].Derived {
			return j
		}
	}
	return -1
}

// dropSite is the step a drop is attributed to. kfree_skb often runs after
// the stack cleared skb->dev (ifindex 0): the drop then happened where the
// packet was last seen, so the nearest earlier step with a device names
// the hop.
func dropSite(steps []Step, i int) int {
	if steps[i].Ifindex != 0 {
		return i
	}
	for j := i - 1; j >= 0; j-- {
		if steps[j].Ifindex != 0 {
			return j
		}
	}
	return i
}
