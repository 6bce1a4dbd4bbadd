package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vxtrace/vxtrace/topo"
)

func joinDoc(node string, pkts ...Packet) *Doc {
	return &Doc{Schema: Schema, Node: node, Hops: []topo.Hop{
		{ID: 0, Ifname: "eth0", NetNS: topo.NetNS{Inode: 1, Name: node + "-host"}},
	}, Packets: pkts}
}

func TestJoin(t *testing.T) {
	drop := &Drop{Reason: "NETFILTER_DROP", Location: "nft_do_chain+0x3e8", Hop: 0, Ifname: "eth0"}
	n1 := joinDoc("n1",
		Packet{ID: "a", Verdict: "left_node", LastHop: 0},
		Packet{ID: "b", Verdict: "left_node", LastHop: 0},
		Packet{ID: "c", Verdict: "left_node", LastHop: 0},
		Packet{ID: "d", Verdict: "vanished", LastHop: 0},
	)
	n2 := joinDoc("n2",
		Packet{ID: "a", Verdict: "delivered", LastHop: 0},
		Packet{ID: "b", Verdict: "dropped", LastHop: 0, Drop: drop},
	)
	j, err := Join([]*Doc{n1, n2})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ verdict, node string }{
		"a": {"delivered", "n2"},
		"b": {"dropped", "n2"},
		"c": {LostBetweenNodes, "n1"},
		"d": {"vanished", "n1"},
	}
	if len(j.Packets) != len(want) {
		t.Fatalf("%d packets, want %d", len(j.Packets), len(want))
	}
	for _, p := range j.Packets {
		w := want[p.ID]
		if p.Verdict != w.verdict || p.Node != w.node {
			t.Errorf("%s: %s on %s, want %s on %s", p.ID, p.Verdict, p.Node, w.verdict, w.node)
		}
	}
	if j.Packets[1].Drop == nil || j.Packets[1].Drop.Reason != "NETFILTER_DROP" {
		t.Errorf("drop not carried: %+v", j.Packets[1])
	}
	if got := j.Packets[0].Seen[0].LastHop; got != "n1-host/eth0" {
		t.Errorf("last hop label %q", got)
	}
	var buf bytes.Buffer
	if err := WriteJoinedText(&buf, j); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "never reached n2: the underlay lost it") {
		t.Errorf("text:\n%s", buf.String())
	}

	// Two traces from hosts with the same name stay apart.
	j, _ = Join([]*Doc{joinDoc("h", Packet{ID: "a", Verdict: "left_node"}), joinDoc("h", Packet{ID: "a", Verdict: "delivered"})})
	if j.Nodes[0] == j.Nodes[1] {
		t.Errorf("node names %v", j.Nodes)
	}
	if _, err := Join([]*Doc{n1}); err == nil {
		t.Error("joining one trace succeeded")
	}
}

// AddPacket counts and caps like Add, from an already converted packet.
func TestRecorderAddPacket(t *testing.T) {
	r := NewRecorder(Options{Node: "n", MaxPackets: 2})
	for _, v := range []string{"delivered", "dropped", "left_node", "vanished"} {
		r.AddPacket(&Packet{ID: "0000000000000001", Verdict: v})
	}
	d := r.Doc(End{})
	if len(d.Packets) != 2 || d.PacketsOmitted != 2 || d.Summary.Packets != 4 {
		t.Fatalf("kept %d, omitted %d, counted %d", len(d.Packets), d.PacketsOmitted, d.Summary.Packets)
	}
	v := d.Summary.Verdicts
	if v.Delivered != 1 || v.Dropped != 1 || v.LeftNode != 1 || v.Vanished != 1 {
		t.Fatalf("verdicts %+v", v)
	}
}
