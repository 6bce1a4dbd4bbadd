package report

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// JoinSchema names the joined document's version.
const JoinSchema = "vxtrace.join/v1"

// LostBetweenNodes is the joined verdict of a packet that left one node's
// NIC and reached no other traced node: the underlay (a switch, a firewall,
// the cloud network) lost it. No single node's trace can say this.
const LostBetweenNodes = "lost_between_nodes"

// Joined is several nodes' traces of the same packets, matched by packet id
// (the fingerprint is the same on every node).
type Joined struct {
	Schema  string         `json:"schema"`
	Nodes   []string       `json:"nodes"`
	Packets []JoinedPacket `json:"packets"`
	Summary JoinedSummary  `json:"summary"`
}

// JoinedPacket is one packet as every node saw it.
type JoinedPacket struct {
	ID      string      `json:"id"`
	Inner   Inner       `json:"inner"`
	VNI     *uint32     `json:"vni,omitempty"`
	Verdict string      `json:"verdict"`
	Node    string      `json:"node"` // the node whose sighting decided the verdict
	Drop    *Drop       `json:"drop,omitempty"`
	Seen    []NodeSight `json:"seen"`
}

// NodeSight is one node's view of a packet.
type NodeSight struct {
	Node    string `json:"node"`
	Verdict string `json:"verdict"`
	LastHop string `json:"last_hop"` // "namespace/ifname"
	Events  int    `json:"events"`
	Drop    *Drop  `json:"drop,omitempty"`
}

// JoinedSummary counts joined verdicts.
type JoinedSummary struct {
	Packets  int            `json:"packets"`
	Verdicts map[string]int `json:"verdicts"`
}

// Join matches packets across documents by id. A packet's joined verdict:
// dropped if any node dropped it; else delivered if any node delivered it;
// else lost_between_nodes if it left a node and no other node saw it (or
// another node saw it only leave too); else vanished.
func Join(docs []*Doc) (*Joined, error) {
	if len(docs) < 2 {
		return nil, fmt.Errorf("joining needs at least two traces, got %d", len(docs))
	}
	j := &Joined{Schema: JoinSchema, Summary: JoinedSummary{Verdicts: map[string]int{}}}
	names := nodeNames(docs)
	j.Nodes = names
	byID := map[string]int{}
	for di, d := range docs {
		for pi := range d.Packets {
			p := &d.Packets[pi]
			i, ok := byID[p.ID]
			if !ok {
				i = len(j.Packets)
				byID[p.ID] = i
				j.Packets = append(j.Packets, JoinedPacket{ID: p.ID, Inner: p.Inner, VNI: p.VNI})
			}
			j.Packets[i].Seen = append(j.Packets[i].Seen, NodeSight{
				Node: names[di], Verdict: p.Verdict, LastHop: hopLabelOf(d, p.LastHop),
				Events: len(p.Events), Drop: p.Drop,
			})
		}
	}
	for i := range j.Packets {
		decideJoined(&j.Packets[i])
		j.Summary.Verdicts[j.Packets[i].Verdict]++
	}
	j.Summary.Packets = len(j.Packets)
	return j, nil
}

// nodeNames names each document by its node, made unique when two traces
// came from hosts with the same name.
func nodeNames(docs []*Doc) []string {
	out := make([]string, len(docs))
	count := map[string]int{}
	for _, d := range docs {
		count[d.Node]++
	}
	seen := map[string]int{}
	for i, d := range docs {
		n := d.Node
		if n == "" {
			n = "node"
		}
		if count[d.Node] > 1 {
			seen[d.Node]++
			n = fmt.Sprintf("%s#%d", n, seen[d.Node])
		}
		out[i] = n
	}
	return out
}

func hopLabelOf(d *Doc, id int) string {
	for _, h := range d.Hops {
		if h.ID == id {
			ns := h.NetNS.Name
			if ns == "" {
				ns = fmt.Sprintf("netns:%d", h.NetNS.Inode)
			}
			return ns + "/" + h.Ifname
		}
	}
	return "?"
}

func decideJoined(p *JoinedPacket) {
	pick := func(verdict string) (NodeSight, bool) {
		i := slices.IndexFunc(p.Seen, func(s NodeSight) bool { return s.Verdict == verdict })
		if i < 0 {
			return NodeSight{}, false
		}
		return p.Seen[i], true
	}
	if s, ok := pick("dropped"); ok {
		p.Verdict, p.Node, p.Drop = "dropped", s.Node, s.Drop
		return
	}
	if s, ok := pick("delivered"); ok {
		p.Verdict, p.Node = "delivered", s.Node
		return
	}
	if s, ok := pick("left_node"); ok {
		// Every node that saw it saw it leave, and none saw it arrive.
		p.Verdict, p.Node = LostBetweenNodes, s.Node
		return
	}
	p.Verdict, p.Node = "vanished", p.Seen[len(p.Seen)-1].Node
}

// WriteJoinedText renders a joined trace for a terminal.
func WriteJoinedText(w io.Writer, j *Joined) error {
	for _, p := range j.Packets {
		hdr := Header(&Packet{ID: p.ID, Inner: p.Inner, VNI: p.VNI})
		if _, err := fmt.Fprintln(w, hdr); err != nil {
			return err
		}
		for _, s := range p.Seen {
			line := fmt.Sprintf("  %-16s %-10s last %s (%d events)", s.Node, s.Verdict, s.LastHop, s.Events)
			if s.Drop != nil {
				line += fmt.Sprintf("  %s at %s", s.Drop.Reason, s.Drop.Location)
			}
			fmt.Fprintln(w, line)
		}
		switch p.Verdict {
		case LostBetweenNodes:
			var others []string
			for _, n := range j.Nodes {
				if n != p.Node {
					others = append(others, n)
				}
			}
			fmt.Fprintf(w, "  verdict: %s (left %s; never reached %s: the underlay lost it)\n\n",
				p.Verdict, p.Node, strings.Join(others, ", "))
		case "dropped":
			fmt.Fprintf(w, "  verdict: dropped on %s: %s at %s\n\n", p.Node, p.Drop.Reason, p.Drop.Location)
		default:
			fmt.Fprintf(w, "  verdict: %s (%s)\n\n", p.Verdict, p.Node)
		}
	}
	var parts []string
	for _, v := range []string{"delivered", "dropped", LostBetweenNodes, "vanished"} {
		parts = append(parts, fmt.Sprintf("%s %d", v, j.Summary.Verdicts[v]))
	}
	_, err := fmt.Fprintf(w, "packets: %d (%s) across %s\n", j.Summary.Packets, strings.Join(parts, ", "), strings.Join(j.Nodes, ", "))
	return err
}
