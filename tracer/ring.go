package tracer

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ring consumes the BPF ring buffer in place, a batch at a time.
//
// ringbuf.Reader reads the producer position and publishes the consumer
// position once per record. Both sit on cache lines the producing CPU
// touches in every bpf_ringbuf_reserve, so at hundreds of thousands of
// events a second each record moved two lines between the CPUs, and the
// packet path paid for it. Here one drain reads the producer position
// once and publishes the consumer position once, and records are decoded
// where they lie instead of being copied out first.
//
// The data pages are mapped once, not twice in a row as the kernel allows
// (and ringbuf.Reader does) so that a record wrapping around the end reads
// as one slice: the second mapping is resident too, and it was 8 MiB of
// vxtrace's RSS for nothing. The rare wrapping record is copied instead.
type ring struct {
	consPage []byte // the consumer position: the only page we write
	prodMap  []byte // the producer position, then the data
	cons     *uint64
	prod     *uint64
	data     []byte
	mask     uint64
	wrapped  []byte // a record that wraps around the end, made whole
}

// Ring record header (kernel/bpf/ringbuf.c): a 32-bit length whose top bits
// say the record is still being written or was discarded, then the page
// offset the kernel uses, then the data padded to 8 bytes.
const (
	ringHdrSize    = 8
	ringBusyBit    = 1 << 31
	ringDiscardBit = 1 << 30
)

func newRing(m *ebpf.Map) (*ring, error) {
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	cons, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the ring's consumer page: %w", err)
	}
	prod, err := unix.Mmap(m.FD(), int64(page), page+size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Munmap(cons)
		return nil, fmt.Errorf("mapping the ring's data pages: %w", err)
	}
	return newRingOver(cons, prod, page), nil
}

// newRingOver builds a ring over its two mappings (or, in tests, over
// plain memory laid out the same way): the consumer position at the start
// of cons, the producer position at the start of prod, the data from
// prod[page:] to the end.
func newRingOver(cons, prod []byte, page int) *ring {
	size := len(prod) - page
	return &ring{
		consPage: cons,
		prodMap:  prod,
		cons:     (*uint64)(unsafe.Pointer(&cons[0])),
		prod:     (*uint64)(unsafe.Pointer(&prod[0])),
		data:     prod[page:],
		mask:     uint64(size - 1),
	}
}

// available is the number of bytes the kernel has committed or reserved
// beyond what was consumed.
func (r *ring) available() uint64 {
	return atomic.LoadUint64(r.prod) - atomic.LoadUint64(r.cons)
}

var errRingCorrupt = errors.New("ring buffer record runs past the producer position")

// drain hands each committed record's data to fn, in order, up to the
// first record still being written or limit records, and returns how many it
// handed (a record that fails to decode still counts: it was consumed). The
// slice points into the ring: fn must copy what it keeps. The consumer
// position is published every publishEvery bytes (so a long drain frees
// room for the producer as it goes) and at the end.
func (r *ring) drain(limit int, fn func([]byte)) (n int, more bool, err error) {
	const publishEvery = 64 << 10
	prod := atomic.LoadUint64(r.prod)
	cons := atomic.LoadUint64(r.cons)
	start := cons
	for cons < prod {
		if prod-cons < ringHdrSize {
			err = errRingCorrupt
			break
		}
		// An atomic load pairs with the kernel's xchg on commit: the
		// data is visible once the busy bit is clear.
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[cons&r.mask])))
		if hdr&ringBusyBit != 0 {
			break
		}
		dlen := uint64(hdr &^ (ringBusyBit | ringDiscardBit))
		next := cons + ringHdrSize + (dlen+7)&^7
		if next > prod {
			err = errRingCorrupt
			break
		}
		if hdr&ringDiscardBit == 0 {
			cost := maxRecordEvents(dlen)
			if n+cost > limit {
				more = true
				break
			}
			// Headers are 8-byte aligned in a ring of a power of
			// two bytes, so only the data can wrap.
			off := (cons + ringHdrSize) & r.mask
			if end := off + dlen; end <= uint64(len(r.data)) {
				fn(r.data[off:end:end])
			} else {
				fn(r.whole(off, dlen))
			}
			n += cost
		}
		cons = next
		if cons-start >= publishEvery {
			atomic.StoreUint64(r.cons, cons)
			start = cons
		}
	}
	atomic.StoreUint64(r.cons, cons)
	return n, more, err
}

// maxRecordEvents bounds how many events a record of dlen bytes holds: a
// batch of whole events and heads (FlagHeaders tells them apart), or one
// event. The most that add up to dlen: as many heads as can be, with the
// fewest whole events that make up the rest.
func maxRecordEvents(dlen uint64) int {
	for whole := uint64(0); whole*EventSize <= dlen; whole++ {
		if rest := dlen - whole*EventSize; rest%EventHeadSize == 0 {
			return max(1, int(whole+rest/EventHeadSize))
		}
	}
	return 1
}

// whole copies a record's data that runs past the end of the ring and on
// from its start.
func (r *ring) whole(off, dlen uint64) []byte {
	if uint64(cap(r.wrapped)) < dlen {
		r.wrapped = make([]byte, dlen)
	}
	b := r.wrapped[:dlen]
	k := copy(b, r.data[off:])
	copy(b[k:], r.data)
	return b
}

func (r *ring) close() error {
	return errors.Join(unix.Munmap(r.prodMap), unix.Munmap(r.consPage))
}
