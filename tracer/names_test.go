package tracer

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

func kernelNames(t *testing.T) *Names {
	t.Helper()
	n, err := NewNames()
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("no kernel BTF: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNamesDropReasonsFromKernelBTF(t *testing.T) {
	n := kernelNames(t)
	if got := n.DropReason(2); got != "NOT_SPECIFIED" {
		t.Errorf("DropReason(2) = %q, want NOT_SPECIFIED", got)
	}
	if got := n.DropReason(1); got != "SKB_CONSUMED" {
		t.Errorf("DropReason(1) = %q, want SKB_CONSUMED", got)
	}
	byName := map[string]uint32{}
	for code, name := range n.reasons {
		if strings.HasPrefix(name, dropReasonPrefix) {
			t.Errorf("code %d: prefix not stripped: %q", code, name)
		}
		byName[name] = code
	}
	for _, want := range []string{"NETFILTER_DROP", "VXLAN_VNI_NOT_FOUND", "NO_SOCKET", "PKT_TOO_BIG"} {
		code, ok := byName[want]
		if !ok {
			t.Errorf("reason %s missing from the kernel's enum", want)
			continue
		}
		if got := n.DropReason(code); got != want {
			t.Errorf("DropReason(%d) = %q, want %q", code, got, want)
		}
	}
	if got := n.DropReason(0xfffff); got != "reason_1048575" {
		t.Errorf("unknown code: %q", got)
	}
}

// kallsymsText returns text symbols from the real /proc/kallsyms by name,
// with the address of the next text symbol (a bound on the function size).
func kallsymsText(t *testing.T, names ...string) map[string][2]uint64 {
	t.Helper()
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		t.Skipf("no kallsyms: %v", err)
	}
	defer f.Close()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	count := map[uint64]int{}
	found := map[string]uint64{}
	var addrs []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[1] != "t" && fields[1] != "T") {
			continue
		}
		addr, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil {
			t.Fatalf("kallsyms line %q: %v", sc.Text(), err)
		}
		count[addr]++
		addrs = append(addrs, addr)
		if want[fields[2]] && len(fields) == 3 {
			found[fields[2]] = addr
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	out := map[string][2]uint64{}
	for name, addr := range found {
		if addr == 0 {
			t.Skip("kallsyms hides addresses (not root, or kptr_restrict)")
		}
		if count[addr] != 1 {
			continue // an alias: either name would be right
		}
		next := ^uint64(0)
		for _, a := range addrs {
			if a > addr && a < next {
				next = a
			}
		}
		out[name] = [2]uint64{addr, next}
	}
	return out
}

func TestNamesSymbolFromKallsyms(t *testing.T) {
	n := kernelNames(t)
	syms := kallsymsText(t, "consume_skb", "netif_receive_skb", "__netif_receive_skb_core", "sk_skb_reason_drop", "kfree_skb_reason")
	if len(syms) == 0 {
		t.Fatal("none of the expected kernel functions is in kallsyms")
	}
	if !n.SymbolsAvailable() {
		t.Fatal("SymbolsAvailable() = false with readable kallsyms addresses")
	}
	for name, r := range syms {
		addr, next := r[0], r[1]
		if got := n.Symbol(addr); got != name {
			t.Errorf("Symbol(%#x) = %q, want %q", addr, got, name)
		}
		if next-addr > 0x1a {
			if got, want := n.Symbol(addr+0x1a), name+"+0x1a"; got != want {
				t.Errorf("Symbol(%#x) = %q, want %q", addr+0x1a, got, want)
			}
		}
	}
	if got := n.Symbol(0x1000); got != "0x1000" {
		t.Errorf("Symbol(0x1000) = %q, want 0x1000", got)
	}
}

func writeKallsyms(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kallsyms")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNamesSymbolParsing(t *testing.T) {
	p := writeKallsyms(t, `ffffffff81000000 T _text
ffffffff81000000 T _stext
ffffffff81000100 t helper
ffffffff81000200 D some_data
ffffffff81000080 T early
ffffffffc0a00000 t nft_do_chain	[nf_tables]
ffffffffc0a00400 T nft_other	[nf_tables]
`)
	n := &Names{kallsyms: p, cache: map[uint64]string{}}
	tests := []struct {
		addr uint64
		want string
	}{
		{0xffffffff81000000, "_text"},
		{0xffffffff81000010, "_text+0x10"}, // aliases: the first in kallsyms order
		{0xffffffff81000085, "early+0x5"},
		{0xffffffff81000250, "helper+0x150"}, // data symbols are not functions
		{0xffffffffc0a005a3, "nft_other+0x1a3"},
		{0xffffffffc0a003ff, "nft_do_chain+0x3ff"},
		{0xffffffff80ffffff, "0xffffffff80ffffff"},
		{0xffffffff81000100 + maxSymOffset, "0xffffffff81100100"},
	}
	for _, tt := range tests {
		if got := n.Symbol(tt.addr); got != tt.want {
			t.Errorf("Symbol(%#x) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestNamesSymbolHiddenAddresses(t *testing.T) {
	p := writeKallsyms(t, "0000000000000000 T _text\n0000000000000000 t helper\n")
	n := &Names{kallsyms: p, cache: map[uint64]string{}}
	if n.SymbolsAvailable() {
		t.Error("SymbolsAvailable() with all-zero addresses")
	}
	if got := n.Symbol(0xffffffff81000010); got != "0xffffffff81000010" {
		t.Errorf("Symbol = %q", got)
	}
	n = &Names{kallsyms: filepath.Join(t.TempDir(), "missing"), cache: map[uint64]string{}}
	if got := n.Symbol(0x10); got != "0x10" {
		t.Errorf("Symbol with no kallsyms = %q", got)
	}
}

// The symbol table is read in the background from NewNames on, not by the
// first Symbol call: that call comes from the correlator at a trace's first
// drop, often under a flood, and a third of a second spent reading
// kallsyms there overflowed the ring.
func TestNamesLoadsSymbolsInBackground(t *testing.T) {
	n := kernelNames(t)
	deadline := time.Now().Add(10 * time.Second)
	for !n.symsDone.Load() {
		if time.Now().After(deadline) {
			t.Fatal("kallsyms not loaded 10s after NewNames with no Symbol call")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(n.syms) == 0 {
		t.Error("background load found no symbols in a readable kallsyms")
	}
}
