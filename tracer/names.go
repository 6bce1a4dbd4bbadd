package tracer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf/btf"
)

// Names turns kernel numbers into names: drop reasons from the running
// kernel's BTF (the enum changes between kernel versions, so a compiled-in
// table would lie) and code addresses from /proc/kallsyms. It implements
// journey.Namer and is safe for concurrent use.
type Names struct {
	reasons map[uint32]string

	kallsyms string // path, a field so tests can point it elsewhere
	symsOnce sync.Once
	syms     []ksym
	symNames string // all names back to back; ksym points into it
	symsDone atomic.Bool

	mu    sync.Mutex
	cache map[uint64]string
}

type ksym struct {
	addr    uint64
	off, ln uint32 // name in Names.symNames
}

// maxSymOffset is how far past a symbol an address may be and still be
// named after it. kallsyms has no sizes: without a bound, an address in a
// gap (past _etext, between modules) would get the name of whatever text
// symbol precedes it.
const maxSymOffset = 1 << 20

// maxSymCache bounds the memo of formatted symbols. Drop locations are a
// handful of call sites, so it never fills in practice.
const maxSymCache = 4096

const dropReasonPrefix = "SKB_DROP_REASON_"

// NewNames reads the drop reasons from the running kernel's BTF, and starts
// reading kallsyms in the background. Loaded on the first Symbol call
// instead, they stalled the correlator for a third of a second at the first
// drop, which under a flood is when the ring can least afford it.
func NewNames() (*Names, error) {
	n, err := newKernelNames()
	if err == nil {
		go n.symsOnce.Do(n.loadSyms)
	}
	return n, err
}

func newKernelNames() (*Names, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("loading kernel BTF: %w", err)
	}
	var enum *btf.Enum
	if os.Getenv("VXTRACE_FORCE_NO_DROP_REASONS") != "" {
		// Tests force the fallback of kernels whose BTF has no enum.
		return newNames(nil, "/proc/kallsyms"), nil
	}
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		// An older kernel: drops are still reported, with the number
		// and the location, just without a name.
		return newNames(nil, "/proc/kallsyms"), nil
	}
	return newNames(enum, "/proc/kallsyms"), nil
}

// ReasonNames reports whether drop reasons have names (the running
// kernel's BTF has enum skb_drop_reason).
func (n *Names) ReasonNames() bool { return len(n.reasons) > 0 }

func newNames(enum *btf.Enum, kallsyms string) *Names {
	n := &Names{
		reasons:  map[uint32]string{},
		kallsyms: kallsyms,
		cache:    make(map[uint64]string),
	}
	if enum == nil {
		return n
	}
	for _, v := range enum.Values {
		// SKB_NOT_DROPPED_YET and SKB_CONSUMED have no prefix; they stay
		// as they are.
		n.reasons[uint32(v.Value)] = strings.TrimPrefix(v.Name, dropReasonPrefix)
	}
	return n
}

// DropReason names a drop reason code, e.g. 2 -> "NOT_SPECIFIED".
func (n *Names) DropReason(code uint32) string {
	if s, ok := n.reasons[code]; ok {
		return s
	}
	return "reason_" + strconv.FormatUint(uint64(code), 10)
}

// Symbol names a kernel text address as "func+0x1a" ("func" when exact), or
// "0x..." when no symbol covers it or kallsyms hides addresses.
func (n *Names) Symbol(addr uint64) string {
	n.symsOnce.Do(n.loadSyms)
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.cache[addr]; ok {
		return s
	}
	s := n.lookup(addr)
	if len(n.cache) < maxSymCache {
		n.cache[addr] = s
	}
	return s
}

// SymbolsAvailable reports whether kallsyms gave real addresses. Without
// root (or with kptr_restrict=2) every address reads as zero, and Symbol
// can only print numbers.
func (n *Names) SymbolsAvailable() bool {
	n.symsOnce.Do(n.loadSyms)
	return len(n.syms) > 0
}

func (n *Names) lookup(addr uint64) string {
	// The last symbol at or below addr.
	i, found := slices.BinarySearchFunc(n.syms, addr, func(s ksym, a uint64) int {
		switch {
		case s.addr < a:
			return -1
		case s.addr > a:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	if i < 0 || addr-n.syms[i].addr >= maxSymOffset {
		return "0x" + strconv.FormatUint(addr, 16)
	}
	// Aliases share an address; take the first in kallsyms order.
	for i > 0 && n.syms[i-1].addr == n.syms[i].addr {
		i--
	}
	s := n.syms[i]
	name := n.symNames[s.off : s.off+s.ln]
	if off := addr - s.addr; off != 0 {
		return name + "+0x" + strconv.FormatUint(off, 16)
	}
	return name
}

// loadSyms reads kallsyms once. A failure leaves the table empty: Symbol
// then prints addresses, which is still useful.
func (n *Names) loadSyms() {
	defer n.symsDone.Store(true)
	f, err := os.Open(n.kallsyms)
	if err != nil {
		return
	}
	defer f.Close()
	syms, names, err := parseKallsyms(f)
	if err != nil {
		return
	}
	n.syms, n.symNames = syms, names
}

var errKallsymsLine = errors.New("malformed kallsyms line")

// parseKallsyms keeps the text symbols ("t"/"T"), sorted by address. It
// returns none when every address is zero (addresses hidden).
func parseKallsyms(r io.Reader) ([]ksym, string, error) {
	var (
		syms    []ksym
		names   strings.Builder
		nonzero bool
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// "ffffffff81000000 T _text" or "... t nft_do_chain\t[nf_tables]".
		// Bytes, not a string per line: the file has ~200k lines.
		line := sc.Bytes()
		addrHex, rest, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			return nil, "", errKallsymsLine
		}
		typ, name, ok := bytes.Cut(rest, []byte{' '})
		if !ok || len(typ) != 1 {
			return nil, "", errKallsymsLine
		}
		if typ[0] != 't' && typ[0] != 'T' {
			continue
		}
		if mod := bytes.IndexAny(name, "\t "); mod >= 0 {
			name = name[:mod]
		}
		addr, err := strconv.ParseUint(string(addrHex), 16, 64)
		if err != nil {
			return nil, "", errKallsymsLine
		}
		if addr != 0 {
			nonzero = true
		}
		syms = append(syms, ksym{addr: addr, off: uint32(names.Len()), ln: uint32(len(name))})
		names.Write(name)
	}
	if err := sc.Err(); err != nil {
		return nil, "", err
	}
	if !nonzero {
		return nil, "", nil
	}
	slices.SortStableFunc(syms, func(a, b ksym) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		}
		return 0
	})
	// Kept for the whole trace: copies of their exact size, not the
	// doubled buffers that built them (~2 MiB less).
	return slices.Clone(syms), strings.Clone(names.String()), nil
}
