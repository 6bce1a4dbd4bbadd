package tracer

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/vxtrace/vxtrace/internal/nsexec"
	"github.com/vxtrace/vxtrace/topo"
)

// TestFreeOfReusedAddress: a tracked skb freed on a path that fires no
// tracepoint keeps its entry, and the next packet at its address, which the
// filter does not want and no hop therefore looks up, is freed with that
// entry in place. The free must see from the headers that it is another
// packet: counted stale, and no event of the old packet made up. The old
// entries are planted at the addresses of packets the tracer followed (the
// kernel's allocator hands them out again), with a fingerprint no packet has.
func TestFreeOfReusedAddress(t *testing.T) {
	requireRoot(t)
	p := newVethPair(t)
	const followed, other = 7777, 7778
	tr, err := New(Config{Dst: mustPrefix(p.addrB + "/32"), Proto: 17, Port: followed,
		NetNS: []uint32{p.nsA.Inode, p.nsB.Inode}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.AttachHops([]topo.Hop{p.hopA, p.hopB}); err != nil {
		t.Fatal(err)
	}
	// Nothing listens at B: each datagram is dropped there (kfree_skb),
	// which takes a followed packet's entry out of the table.
	events, stop := collect(t, tr)
	p.sendUDPTo(t, followed, 128, time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	addrs := map[uint64]bool{}
	drops := 0
	for _, e := range events() {
		addrs[e.Skb] = true
		if e.Hook == HookDrop {
			drops++
		}
	}
	if drops < 128 {
		t.Fatalf("%d drop events for 128 followed datagrams to a closed port", drops)
	}
	if n := trackedEntries(t, tr); n != 0 {
		t.Fatalf("%d tracked entries left after every followed packet was freed", n)
	}

	const ghost = 0x600d_f00d_dead_beef // no packet's fingerprint
	planted := 0
	now := Now()
	for a := range addrs {
		var set vxtraceVxTrackSet
		idx := trackSet(a)
		if err := tr.maps.Tracked.Lookup(idx, &set); err != nil {
			t.Fatal(err)
		}
		for w := range set.Key {
			if set.Key[w] == 0 {
				set.Key[w] = a
				v := &set.Val[w]
				v.Fp, v.Ts, v.Netns, v.Ifindex, v.Sent = ghost, now, p.hopB.NetNS.Inode, p.hopB.Ifindex, 1
				// A freed slot keeps its last check; 0 matches no packet's.
				v.Chk = 0
				planted++
				break
			}
		}
		if err := tr.maps.Tracked.Update(idx, &set, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
	before, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// Packets the filter does not want: datagrams to another closed port
	// (a drop) and pings (B's ICMP frees each request after use: a
	// consume).
	p.sendUDPTo(t, other, 256, 200*time.Microsecond)
	p.ping(t, 256, 200*time.Microsecond)
	time.Sleep(100 * time.Millisecond)
	stop()
	after, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events() {
		if e.FP == ghost {
			t.Fatalf("an event of the planted packet: %+v", e)
		}
	}
	left := trackedEntries(t, tr)
	t.Logf("%d entries planted, %d left, %d stale", planted, left, after.Stale-before.Stale)
	if after.Stale == before.Stale || left == planted {
		t.Fatalf("no free found an address reused (%d planted, %d left): the test proves nothing", planted, left)
	}
}

// ping sends n ICMP echo requests from A to B, gap apart; B answers each.
func (p *vethPair) ping(t *testing.T, n int, gap time.Duration) {
	t.Helper()
	var conn net.PacketConn
	err := nsexec.Do(p.nsA.Path, func() error {
		var err error
		conn, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst := &net.IPAddr{IP: net.ParseIP(p.addrB)}
	msg := make([]byte, 16)
	for i := range n {
		msg[0], msg[1] = 8, 0 // echo request
		binary.BigEndian.PutUint16(msg[2:], 0)
		binary.BigEndian.PutUint16(msg[4:], 0x7878)
		binary.BigEndian.PutUint16(msg[6:], uint16(i))
		binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
		if _, err := conn.WriteTo(msg, dst); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap)
	}
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
