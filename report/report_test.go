package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vxtrace/vxtrace/journey"
)

var update = flag.Bool("update", false, "rewrite golden files and the fuzz seed corpus")

func TestRoundTrip(t *testing.T) {
	for _, name := range []string{"sample", "full", "empty"} {
		t.Run(name, func(t *testing.T) {
			var d *Doc
			switch name {
			case "sample":
				d = sampleDoc(t, 0)
			case "full":
				d = fullDoc(t)
				d.Hops[len(d.Hops)-1].NetNS.Path = "" // json:"-"
			case "empty":
				d = NewRecorder(Options{Node: "n", Started: started}).Doc(End{Ended: ended})
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "trace.json")
			if err := WriteFile(path, d); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("temporary file left behind: %v", ents)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := Read(f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, d) {
				a, _ := json.Marshal(got)
				b, _ := json.Marshal(d)
				t.Fatalf("read back differs:\n got %s\nwant %s", a, b)
			}
		})
	}
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "trace.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, sampleDoc(t, 0)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Read(bytes.NewReader(b)); err != nil {
		t.Errorf("replaced file does not read: %v", err)
	}
	// A directory that does not exist: an error, and nothing created.
	if err := WriteFile(filepath.Join(dir, "no", "trace.json"), sampleDoc(t, 0)); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}

func TestWriteFileStdout(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	old := os.Stdout
	os.Stdout = w
	t.Cleanup(func() { os.Stdout = old })
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	err = WriteFile("-", sampleDoc(t, 0))
	os.Stdout = old
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Read(bytes.NewReader(<-done)); err != nil {
		t.Errorf("stdout document does not read: %v", err)
	}
}

func TestReadRejects(t *testing.T) {
	good, err := Marshal(sampleDoc(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	packet := func(m map[string]any) map[string]any { return m["packets"].([]any)[0].(map[string]any) }
	tests := map[string]string{
		"not json":        "{",
		"array":           "[]",
		"no schema":       edit(func(m map[string]any) { delete(m, "schema") }),
		"schema v2":       edit(func(m map[string]any) { m["schema"] = "vxtrace.trace/v2" }),
		"other schema":    edit(func(m map[string]any) { m["schema"] = "something/v1" }),
		"schema number":   edit(func(m map[string]any) { m["schema"] = 1 }),
		"no packets":      edit(func(m map[string]any) { delete(m, "packets") }),
		"null summary":    edit(func(m map[string]any) { m["summary"] = nil }),
		"bad time":        edit(func(m map[string]any) { m["started"] = "yesterday" }),
		"short id":        edit(func(m map[string]any) { packet(m)["id"] = "abc" }),
		"upper-case id":   edit(func(m map[string]any) { packet(m)["id"] = "000000000000000A" }),
		"unknown verdict": edit(func(m map[string]any) { packet(m)["verdict"] = "lost" }),
		"no events":       edit(func(m map[string]any) { delete(packet(m), "events") }),
		"wrong type":      edit(func(m map[string]any) { packet(m)["last_hop"] = "one" }),
		"trailing data":   string(good) + "{}",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Read(strings.NewReader(in)); err == nil {
				t.Error("Read accepted it")
			}
		})
	}
	// Fields from a later v1 writer are ignored.
	later := edit(func(m map[string]any) { m["future"] = true; packet(m)["future"] = 1 })
	if _, err := Read(strings.NewReader(later)); err != nil {
		t.Errorf("unknown field: %v", err)
	}
}

func TestPackets(t *testing.T) {
	d := sampleDoc(t, 0)
	if len(d.Packets) != 5 {
		t.Fatalf("%d packets", len(d.Packets))
	}
	delivered, dropped, syn, v6, loop := d.Packets[0], d.Packets[1], d.Packets[2], d.Packets[3], d.Packets[4]

	if delivered.ID != "0000000000000001" || delivered.Verdict != "delivered" || delivered.LastHop != 9 {
		t.Errorf("delivered: %s %s %d", delivered.ID, delivered.Verdict, delivered.LastHop)
	}
	in := delivered.Inner
	if in.Src != "10.0.1.3" || in.Dst != "10.0.1.4" || in.Proto != "icmp" || *in.ICMPType != 8 || *in.ICMPID != 7 ||
		*in.ICMPSeq != 1 || *in.IPID != 0x1001 || in.Sport != nil || in.TCPFlags != "" {
		t.Errorf("icmp inner %+v", in)
	}
	if *delivered.VNI != 4097 || *delivered.Outer != (Outer{Src: "10.99.1.2", Dst: "10.99.2.2", Sport: 51000, Dport: 4789}) {
		t.Errorf("outer %v %+v", *delivered.VNI, *delivered.Outer)
	}
	if len(delivered.Events) != 13 {
		t.Fatalf("%d events", len(delivered.Events))
	}
	fwd := delivered.Events[2]
	if fwd.Dir != "fwd" || fwd.What != "forwarded" || !fwd.Derived || fwd.Ifname != "br0" || fwd.Hop != 2 || fwd.TNS != 2500 {
		t.Errorf("bridge event %+v", fwd)
	}
	nic := delivered.Events[4]
	if nic.Dir != "tx" || nic.What != "sent" || !nic.Encap || *nic.VNI != 4097 || nic.Len != 134 || nic.NetNS != nsN1 {
		t.Errorf("nic event %+v", nic)
	}
	if e := delivered.Events[12]; e.What != "consumed" || e.TNS != 17100 {
		t.Errorf("last event %+v", e)
	}

	want := Drop{Reason: "NETFILTER_DROP", ReasonCode: 6, Location: "nft_do_chain+0x5a3", Hop: 5, Ifname: "eth0", NetNS: nsN2}
	if dropped.Verdict != "dropped" || dropped.Drop == nil || *dropped.Drop != want || dropped.LastHop != 5 {
		t.Errorf("dropped %s %+v", dropped.Verdict, dropped.Drop)
	}
	if e := dropped.Events[len(dropped.Events)-1]; e.What != "dropped" || e.Hop != -1 || e.Ifname != "" {
		t.Errorf("drop event %+v", e)
	}

	in = syn.Inner
	if syn.Verdict != "left_node" || in.Proto != "tcp" || *in.Sport != 41234 || *in.Dport != 80 || in.TCPFlags != "SYN" || in.ICMPType != nil {
		t.Errorf("tcp %s %+v", syn.Verdict, in)
	}
	in = v6.Inner
	if v6.Verdict != "vanished" || in.Src != "fd00::3" || in.Proto != "udp" || in.IPID != nil || *in.Dport != 53 || v6.VNI != nil || v6.Outer != nil {
		t.Errorf("udp6 %s %+v", v6.Verdict, in)
	}
	if loop.EventsOmitted != 2 || len(loop.Events) != 14 {
		t.Errorf("loop: %d events, %d omitted", len(loop.Events), loop.EventsOmitted)
	}
}

func TestTCPFlagsAndProto(t *testing.T) {
	if got := TCPFlags(0x12); got != "SYN|ACK" {
		t.Errorf("TCPFlags(0x12) = %q", got)
	}
	if got := TCPFlags(0xff); got != "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR" {
		t.Errorf("TCPFlags(0xff) = %q", got)
	}
	if got := TCPFlags(0); got != "" {
		t.Errorf("TCPFlags(0) = %q", got)
	}
	for p, want := range map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 4: "4", 0: "0"} {
		if got := ProtoName(p); got != want {
			t.Errorf("ProtoName(%d) = %q, want %q", p, got, want)
		}
	}
}

func TestSummaryAndCap(t *testing.T) {
	d := sampleDoc(t, 2)
	if len(d.Packets) != 2 || d.PacketsOmitted != 3 {
		t.Errorf("%d packets kept, %d omitted; want 2, 3", len(d.Packets), d.PacketsOmitted)
	}
	s := d.Summary
	if s.Packets != 5 || s.Verdicts != (VerdictCounts{Delivered: 1, Dropped: 1, LeftNode: 1, Vanished: 2}) {
		t.Errorf("summary %d %+v", s.Packets, s.Verdicts)
	}
	// Every hop, then the switch's two interfaces (outside the topology)
	// in ifindex order.
	if len(s.PerHop) != 12 {
		t.Fatalf("%d per-hop rows, want 12", len(s.PerHop))
	}
	n2 := s.PerHop[5]
	if n2.Hop != 5 || n2.Ifname != "eth0" || n2.NetNS != nsN2 || n2.Seen != 5 || n2.Dropped != 2 ||
		!reflect.DeepEqual(n2.DropReasons, map[string]uint64{"NETFILTER_DROP": 2}) {
		t.Errorf("n2 row %+v", n2)
	}
	if br := s.PerHop[2]; br.Seen != 0 || br.DropReasons == nil {
		t.Errorf("a hop without counters: %+v", br)
	}
	sw2, sw3 := s.PerHop[10], s.PerHop[11]
	if sw2.Hop != -1 || sw2.Ifname != "if2" || sw2.Seen != 4 || sw3.Ifname != "if3" ||
		!reflect.DeepEqual(sw3.DropReasons, map[string]uint64{"NOT_SPECIFIED": 1}) {
		t.Errorf("unknown rows %+v %+v", sw2, sw3)
	}
	if d.LostEvents != (LostEvents{Kernel: 3, User: 1, Total: 4}) {
		t.Errorf("lost %+v", d.LostEvents)
	}
	if d.Schema != Schema || d.Node != "lab-host" || !d.Started.Equal(started) || !d.Ended.Equal(ended) {
		t.Errorf("header %s %s %v %v", d.Schema, d.Node, d.Started, d.Ended)
	}
}

func TestJSONL(t *testing.T) {
	var buf bytes.Buffer
	w := NewJSONL(&buf)
	ps := journeys(t)
	for i, p := range ps {
		if err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		// Flushed per packet: the line is there before Close.
		if n := strings.Count(buf.String(), "\n"); n != i+1 {
			t.Fatalf("after %d packets, %d lines", i+1, n)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	i := 0
	for ; sc.Scan(); i++ {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var got Packet
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if want := FromJourney(ps[i]); !reflect.DeepEqual(got, want) {
			t.Errorf("line %d differs", i)
		}
	}
	if i != len(ps) {
		t.Errorf("%d lines, want %d", i, len(ps))
	}

	path := filepath.Join(t.TempDir(), "trace.jsonl")
	f, err := CreateJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Write(ps[0]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Errorf("jsonl file: %v %v", fi, err)
	}
}

func TestText(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteText(&buf, sampleDoc(t, 0), TextOptions{}); err != nil {
		t.Fatal(err)
	}
	got := buf.String()
	golden := filepath.Join("testdata", "text.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("text differs from %s (go test -run TestText -update to accept):\n%s", golden, got)
	}
	for _, line := range []string{
		"  verdict: dropped NETFILTER_DROP at nft_do_chain+0x5a3 (hop n2/eth0)\n",
		"  verdict: delivered (hop c2/eth0)\n",
		"  verdict: left_node (hop n1/eth0)\n",
		"  verdict: vanished (last seen at hop ov1/vxlan0)\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("no line %q", line)
		}
	}
	if strings.Contains(got, "\x1b[") {
		t.Error("colour without TextOptions.Color")
	}
	// Step lines of one packet line up: the ifname column starts at the
	// same rune offset in each.
	block := strings.Split(got, "\n\n")[0]
	col := -1
	for _, l := range strings.Split(block, "\n")[1:] {
		if !strings.HasPrefix(l, "  +") {
			continue
		}
		i := strings.Index(l, " c1 ")
		if i < 0 {
			i = strings.Index(l, " ov1 ")
		}
		if i < 0 {
			continue
		}
		if col >= 0 && i != col {
			t.Errorf("columns do not line up:\n%s", block)
			break
		}
		col = i
	}

	buf.Reset()
	if err := WriteText(&buf, sampleDoc(t, 0), TextOptions{Color: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "verdict: \x1b[31mdropped\x1b[0m NETFILTER_DROP") {
		t.Error("no colour with TextOptions.Color")
	}
}

func TestDuration(t *testing.T) {
	for ns, want := range map[uint64]string{0: "0ns", 999: "999ns", 12_345: "12.3µs", 1_204_000: "1.204ms", 2_500_000_000: "2.500s"} {
		if got := Duration(ns); got != want {
			t.Errorf("Duration(%d) = %q, want %q", ns, got, want)
		}
	}
}

func TestWhat(t *testing.T) {
	for _, d := range []string{journey.DirRx, journey.DirTx, journey.DirDrop, journey.DirConsume, journey.DirFwd, journey.DirTCIn, journey.DirTCOut, journey.DirNeigh} {
		if What(d) == d {
			t.Errorf("What(%q) has no human form", d)
		}
	}
}

// A trace converts every packet into one reused Packet: the recorder must
// keep its own copy, and the reuse must not leak one packet's events into
// the next.
func TestFillFromJourneyReuse(t *testing.T) {
	ps := journeys(t)
	r := NewRecorder(Options{Node: "n1"})
	var rp Packet
	for _, p := range ps {
		FillFromJourney(p, &rp)
		if want := FromJourney(p); !reflect.DeepEqual(rp.Clone(), want) {
			t.Fatalf("packet %x: reused conversion differs from a fresh one", p.ID)
		}
		r.AddPacket(&rp)
	}
	d := r.Doc(End{})
	for i, p := range ps {
		if want := FromJourney(p); !reflect.DeepEqual(d.Packets[i], want) {
			t.Errorf("recorded packet %d was overwritten by a later conversion", i)
		}
	}
}

// Every field a conversion points into is rewritten by the next one: a
// clone must own all of it.
func TestCloneOwnsPointedValues(t *testing.T) {
	ps := journeys(t)
	a := ps[1] // dropped on the way: every optional field is set
	if !a.Encap || a.Drop == nil || len(a.Steps) == 0 {
		t.Fatalf("fixture: want an encapsulated, dropped packet, got %+v", a)
	}
	b := a.Clone()
	b.ID++
	b.VNI++
	b.Outer.Sport++
	b.Inner.Sport++
	b.Inner.Dport++
	b.IPID++
	d := *a.Drop
	d.Reason, d.Code, d.HopID = "OTHER", d.Code+1, d.HopID+1
	b.Drop = &d
	for i := range b.Steps {
		b.Steps[i].VNI++
	}
	var rp Packet
	FillFromJourney(a, &rp)
	kept := rp.Clone()
	FillFromJourney(b, &rp)
	if want := FromJourney(a); !reflect.DeepEqual(kept, want) {
		t.Errorf("a clone changed with the next conversion:\n got %+v\nwant %+v", kept, want)
	}
	if reflect.DeepEqual(rp.Clone(), kept) {
		t.Error("the second conversion wrote nothing new: the test proves nothing")
	}
}

// A flooded trace converts every packet: after the first, a conversion
// allocates nothing (what it allocates is what makes the collector run).
func TestFillFromJourneyAllocs(t *testing.T) {
	ps := journeys(t)
	var rp Packet
	for _, p := range ps {
		FillFromJourney(p, &rp)
	}
	for _, p := range ps {
		if n := testing.AllocsPerRun(100, func() { FillFromJourney(p, &rp) }); n > 0 {
			t.Errorf("packet %x: %.0f allocations per conversion, want 0", p.ID, n)
		}
		if n := testing.AllocsPerRun(100, func() { FillForLine(p, &rp) }); n > 0 {
			t.Errorf("packet %x: %.0f allocations per line's conversion, want 0", p.ID, n)
		}
		if want := PacketID(p.ID); rp.ID != want {
			t.Errorf("id %q, want %q", rp.ID, want)
		}
	}
}

func TestPacketID(t *testing.T) {
	for _, fp := range []uint64{0, 1, 0xabcdef, 0x0123456789abcdef, ^uint64(0)} {
		if got, want := PacketID(fp), fmt.Sprintf("%016x", fp); got != want {
			t.Errorf("PacketID(%#x) = %q, want %q", fp, got, want)
		}
	}
}

// The address names, through the recent ones and the cache behind them,
// are each address's own, however the addresses come and go.
func TestFillStoreAddr(t *testing.T) {
	f := &fillStore{addrs: map[netip.Addr]string{}}
	var addrs []netip.Addr
	for i := range 9 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	addrs = append(addrs, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("::ffff:10.0.0.1"))
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		a := addrs[rng.IntN(len(addrs))]
		if got := f.addr(a); got != a.String() {
			t.Fatalf("addr(%v) = %q", a, got)
		}
	}
	if got := f.addr(netip.Addr{}); got != "" {
		t.Errorf("no address: %q", got)
	}
}

// The one-line form reads the same from FillForLine's packet as from
// FillFromJourney's, which it must, for every kind of journey: it is what a
// flood's -q trace prints once the document keeps no more packets.
func TestFillForLineSameLine(t *testing.T) {
	text := NewText(io.Discard, TextOptions{})
	text.SetHops(labHops())
	var full, line Packet
	fewer := false
	for _, p := range journeys(t) {
		FillFromJourney(p, &full)
		FillForLine(p, &line)
		want := text.AppendVerdictLine(AppendHeader(nil, &full), &full)
		got := text.AppendVerdictLine(AppendHeader(nil, &line), &line)
		if !bytes.Equal(got, want) {
			t.Errorf("packet %x:\n got %s\nwant %s", p.ID, got, want)
		}
		for _, e := range line.Events {
			if e.Hop != p.LastHop {
				t.Errorf("packet %x: kept an event at hop %d, not its last hop %d", p.ID, e.Hop, p.LastHop)
			}
		}
		fewer = fewer || len(line.Events) < len(full.Events)
	}
	if !fewer {
		t.Error("FillForLine kept every event of every packet: the test proves nothing")
	}
}

// A packet parked for ARP says for which address, on its neigh line.
func TestTextNeighWait(t *testing.T) {
	d := sampleDoc(t, 0)
	p := d.Packets[1]
	p.Events = []Event{
		{Hop: 0, Ifname: "eth0", NetNS: nsC1, Dir: journey.DirNeigh, Len: 84, NextHop: "10.0.1.4"},
		{TNS: 3_000_000_000, Hop: 0, Ifname: "eth0", NetNS: nsC1, Dir: journey.DirDrop, Len: 84},
	}
	var buf bytes.Buffer
	text := NewText(&buf, TextOptions{})
	text.SetHops(d.Hops)
	if err := text.Packet(&p); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"     +0ns  c1  eth0  neigh  84  awaiting ARP for 10.0.1.4\n", "  +3.000s  c1  eth0  drop   84\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no line %q in\n%s", want, buf.String())
		}
	}
	// Still waiting when the journey ended: the verdict names the wait.
	p.Events = p.Events[:1]
	p.Verdict, p.Drop, p.LastHop = string(journey.Vanished), nil, 0
	if got, want := text.VerdictLine(&p), "verdict: vanished (waiting for ARP for 10.0.1.4 at hop c1/eth0)"; got != want {
		t.Errorf("verdict line %q, want %q", got, want)
	}
}
