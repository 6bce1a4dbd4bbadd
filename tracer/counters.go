package tracer

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/vxtrace/vxtrace/topo"
)

// HopCounters are the in-kernel counters of one interface. Rx, Tx and Drops
// count packets that matched the filter (Bytes, their bytes, only where no TC
// program counts them: TC keeps each device's counters in one cache line);
// the TC fields count every packet that crossed the hop's TC hooks. They stay
// right when events are lost.
type HopCounters struct {
	Rx, Tx, Drops, Bytes            uint64
	TCIn, TCOut, TCOverlay, TCBytes uint64
}

// DropKey is a (hop, reason) pair of the drop counters.
type DropKey struct {
	Hop    topo.Key
	Reason uint32
}

// Stats are the tracer's own counters, summed over CPUs.
type Stats struct {
	Events    uint64 // events written to the ring
	Lost      uint64 // events lost in the kernel: the ring was full
	TrackFull uint64 // new tracked skbs that lost their table entry to another CPU's claim
	Stale     uint64 // tracked skbs found reused by another packet
}

// HopCounters reads the per-hop counters.
func (t *Tracer) HopCounters() (map[topo.Key]HopCounters, error) {
	out := make(map[topo.Key]HopCounters)
	var k vxtraceVxHopKey
	var per []vxtraceVxHopStats
	it := t.maps.HopStats.Iterate()
	for it.Next(&k, &per) {
		var c HopCounters
		for _, v := range per {
			c.add(fromStats(&v))
		}
		out[topo.Key{NetNS: k.Netns, Ifindex: k.Ifindex}] = c
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading hop counters: %w", err)
	}
	t.slotMu.Lock()
	defer t.slotMu.Unlock()
	var slot []vxtraceVxHopSlot
	for idx, k := range t.slots {
		if err := t.maps.HopSlots.Lookup(idx, &slot); err != nil {
			return nil, fmt.Errorf("reading hop counters: %w", err)
		}
		c := out[k]
		for _, v := range slot {
			if v.Key.Netns != k.NetNS || v.Key.Ifindex != k.Ifindex {
				continue
			}
			c.add(fromStats(&v.St))
		}
		out[k] = c
	}
	for k, r := range t.retired {
		c := out[k]
		c.add(r)
		out[k] = c
	}
	err := t.eachTCSlot(func(_ int64, k topo.Key, s *vxtraceVxTcSlot) {
		c := out[k]
		c.add(fromSlot(s))
		out[k] = c
	})
	return out, err
}

func fromSlot(s *vxtraceVxTcSlot) HopCounters {
	return HopCounters{Rx: s.Rx, Tx: s.Tx, TCIn: s.In, TCOut: s.Out, TCOverlay: s.Overlay, TCBytes: s.Bytes}
}

func fromStats(v *vxtraceVxHopStats) HopCounters {
	return HopCounters{Rx: v.Rx, Tx: v.Tx, Drops: v.Drops, Bytes: v.Bytes,
		TCIn: v.TcIn, TCOut: v.TcOut, TCOverlay: v.TcOverlay, TCBytes: v.TcBytes}
}

func (c *HopCounters) add(o HopCounters) {
	c.Rx += o.Rx
	c.Tx += o.Tx
	c.Drops += o.Drops
	c.Bytes += o.Bytes
	c.TCIn += o.TCIn
	c.TCOut += o.TCOut
	c.TCOverlay += o.TCOverlay
	c.TCBytes += o.TCBytes
}

// tcSlotBits mirrors VX_TC_SLOTS_BITS; a slot is 64 bytes.
const (
	tcSlotBits = 10
	tcSlotSize = 64
)

// eachTCSlot calls fn for every claimed slot of tc_slots (every CPU's),
// with its offset in the mapping. The kernel writes the slots while they
// are read: a count may be a packet behind, never torn (aligned 8-byte
// words). The caller holds slotMu.
func (t *Tracer) eachTCSlot(fn func(off int64, k topo.Key, s *vxtraceVxTcSlot)) error {
	if t.tcMem == nil {
		return nil
	}
	if t.tcBuf == nil {
		t.tcBuf = make([]byte, 64<<10)
	}
	buf := t.tcBuf
	var s vxtraceVxTcSlot
	for off := int64(0); off < int64(t.tcMem.Size()); off += int64(len(buf)) {
		n, err := t.tcMem.ReadAt(buf, off)
		if err != nil && n == 0 {
			return fmt.Errorf("reading the TC counters: %w", err)
		}
		for i := 0; i+tcSlotSize <= n; i += tcSlotSize {
			b := buf[i:]
			s.Dev = binary.LittleEndian.Uint64(b)
			idx := (off + int64(i)) / tcSlotSize
			// Slot 0 of each CPU is the program's scratch line.
			if s.Dev == 0 || idx&(1<<tcSlotBits-1) == 0 {
				continue
			}
			s.Netns = binary.LittleEndian.Uint32(b[8:])
			s.Ifindex = binary.LittleEndian.Uint32(b[12:])
			if s.Ifindex == 0 {
				continue // being claimed or freed
			}
			s.In = binary.LittleEndian.Uint64(b[16:])
			s.Out = binary.LittleEndian.Uint64(b[24:])
			s.Overlay = binary.LittleEndian.Uint64(b[32:])
			s.Bytes = binary.LittleEndian.Uint64(b[40:])
			s.Rx = binary.LittleEndian.Uint64(b[48:])
			s.Tx = binary.LittleEndian.Uint64(b[56:])
			fn(off+int64(i), topo.Key{NetNS: s.Netns, Ifindex: s.Ifindex}, &s)
		}
	}
	return nil
}

// ForgetHops frees the TC counter slots of hops that went away, so that
// a device later made at a freed one's address is counted as itself. Their
// counts so far are kept.
func (t *Tracer) ForgetHops(gone []topo.Key) error {
	if len(gone) == 0 || t.tcMem == nil {
		return nil
	}
	t.slotMu.Lock()
	defer t.slotMu.Unlock()
	g := make(map[topo.Key]bool, len(gone))
	for _, k := range gone {
		g[k] = true
	}
	zero := make([]byte, tcSlotSize)
	var errs []error
	err := t.eachTCSlot(func(off int64, k topo.Key, s *vxtraceVxTcSlot) {
		if !g[k] {
			return
		}
		if t.retired == nil {
			t.retired = make(map[topo.Key]HopCounters)
		}
		r := t.retired[k]
		r.add(fromSlot(s))
		t.retired[k] = r
		// The key and counts first, the device last: a slot is
		// claimable only once all of it is clear.
		if _, err := t.tcMem.WriteAt(zero[8:], off+8); err != nil {
			errs = append(errs, err)
		}
		if _, err := t.tcMem.WriteAt(zero[:8], off); err != nil {
			errs = append(errs, err)
		}
	})
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return fmt.Errorf("freeing TC counter slots: %w", errs[0])
	}
	return nil
}

// hopSlot mirrors vx_hop_slot_idx in bpf/vxtrace.h.
func hopSlot(k topo.Key) uint32 {
	h := (k.NetNS * 0x9E3779B1) ^ (k.Ifindex * 0x85EBCA77)
	return h >> (32 - hopSlotBits)
}

const hopSlotBits = 10 // VX_HOP_SLOTS_BITS

// assignSlot gives a hop its counter slot, unless another hop holds it: that
// hop's counters stay in the hash map, where the programs look next.
func (t *Tracer) assignSlot(k topo.Key) error {
	idx := hopSlot(k)
	t.slotMu.Lock()
	defer t.slotMu.Unlock()
	if old, taken := t.slots[idx]; taken {
		if old != k {
			t.log.Debug("hop counter slot taken: counting in the hash map", "hop", k, "slot", idx, "by", old)
		}
		return nil
	}
	vals := make([]vxtraceVxHopSlot, ebpf.MustPossibleCPU())
	for i := range vals {
		vals[i].Key = vxtraceVxHopKey{Netns: k.NetNS, Ifindex: k.Ifindex}
	}
	if err := t.maps.HopSlots.Put(idx, vals); err != nil {
		return fmt.Errorf("assigning a counter slot: %w", err)
	}
	if t.slots == nil {
		t.slots = make(map[uint32]topo.Key)
	}
	t.slots[idx] = k
	return nil
}

// DropCounters reads drops by hop and reason.
func (t *Tracer) DropCounters() (map[DropKey]uint64, error) {
	out := make(map[DropKey]uint64)
	var k vxtraceVxDropKey
	var per []uint64
	it := t.maps.DropStats.Iterate()
	for it.Next(&k, &per) {
		var n uint64
		for _, v := range per {
			n += v
		}
		out[DropKey{Hop: topo.Key{NetNS: k.Netns, Ifindex: k.Ifindex}, Reason: k.Reason}] = n
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading drop counters: %w", err)
	}
	return out, nil
}

// Stats reads the tracer's own counters.
func (t *Tracer) Stats() (Stats, error) {
	var s Stats
	for idx, dst := range []*uint64{&s.Events, &s.Lost, &s.TrackFull, &s.Stale} {
		var per []uint64
		if err := t.maps.Stats.Lookup(uint32(idx), &per); err != nil {
			return s, fmt.Errorf("reading stats: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return s, nil
}

// ProgramStats is the kernel's run-time accounting of one program, with
// kernel.bpf_stats_enabled on.
type ProgramStats struct {
	Name            string
	RunCount        uint64
	RunTimeNs       uint64
	RecursionMisses uint64
}

// ProgramStats returns the run-time figures of every attached program.
func (t *Tracer) ProgramStats() []ProgramStats {
	var out []ProgramStats
	seen := map[ebpf.ProgramID]bool{}
	add := func(name string, p *ebpf.Program) {
		if p == nil {
			return
		}
		info, err := p.Info()
		if err != nil {
			return
		}
		id, _ := info.ID()
		if seen[id] {
			return
		}
		seen[id] = true
		st, err := p.Stats()
		if err != nil {
			return
		}
		out = append(out, ProgramStats{Name: name, RunCount: st.RunCount, RunTimeNs: uint64(st.Runtime.Nanoseconds()), RecursionMisses: st.RecursionMisses})
	}
	for _, l := range t.links {
		info, err := l.Info()
		if err != nil {
			continue
		}
		p, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			continue
		}
		pi, _ := p.Info()
		name := ""
		if pi != nil {
			name = pi.Name
		}
		add(name, p)
		p.Close()
	}
	add("tc_ingress", t.tc.Ingress)
	add("tc_egress", t.tc.Egress)
	return out
}
