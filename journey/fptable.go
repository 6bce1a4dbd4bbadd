package journey

import "math/bits"

// fpTable maps a fingerprint to its open journey. Every event looks its
// journey up and every packet adds and deletes one, tens of thousands of
// times a second under a flood: with Go's map the probes alone (its deletes
// leave tombstones that later lookups walk past) were a sixth of the
// correlator's CPU. This is open addressing with linear probing, kept at
// most half full, and deletes that shift the run after a hole back into
// it, so that no lookup walks past a deleted slot.
type fpTable struct {
	slots []fpSlot
	mask  uint64
	shift uint8
	n     int
}

// fpSlot: j nil is an empty slot (a fingerprint may be any value, 0 too).
type fpSlot struct {
	fp uint64
	j  *journey
}

// newFPTable holds up to max journeys at a load of at most one half.
func newFPTable(max int) fpTable {
	size := 2
	for size < 2*max {
		size <<= 1
	}
	return fpTable{
		slots: make([]fpSlot, size),
		mask:  uint64(size - 1),
		shift: uint8(64 - bits.TrailingZeros(uint(size))),
	}
}

// home is fp's first slot. Fingerprints are hashes already, but of a
// packet's fields, which tests (and a hostile sender) may choose: the
// multiply spreads any of them over the table.
func (t *fpTable) home(fp uint64) uint64 {
	return (fp * 0x9E3779B97F4A7C15) >> t.shift
}

func (t *fpTable) get(fp uint64) *journey {
	for i := t.home(fp); ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.j == nil || s.fp == fp {
			return s.j
		}
	}
}

// put adds fp, which must not be in the table, and the table must have room
// (len < max of newFPTable).
func (t *fpTable) put(fp uint64, j *journey) {
	i := t.home(fp)
	for t.slots[i].j != nil {
		i = (i + 1) & t.mask
	}
	t.slots[i] = fpSlot{fp: fp, j: j}
	t.n++
}

func (t *fpTable) delete(fp uint64) {
	i := t.home(fp)
	for {
		s := &t.slots[i]
		if s.j == nil {
			return
		}
		if s.fp == fp {
			break
		}
		i = (i + 1) & t.mask
	}
	t.n--
	// Backward shift: each later entry of the run moves into the hole
	// unless the hole lies before its home slot (cyclically), where a
	// lookup from that home would no longer find it.
	hole := i
	for i = (i + 1) & t.mask; t.slots[i].j != nil; i = (i + 1) & t.mask {
		h := t.home(t.slots[i].fp)
		if (i-h)&t.mask >= (i-hole)&t.mask {
			t.slots[hole] = t.slots[i]
			hole = i
		}
	}
	t.slots[hole] = fpSlot{}
}

func (t *fpTable) len() int { return t.n }
