// Package tracer owns the kernel side of vxtrace: it loads the BPF programs
// (BTF tracepoints with a raw-tracepoint fallback, TC programs on hop
// interfaces through tcx or clsact), probes what the running kernel allows,
// reads events from the ring buffer, and reads the in-kernel counters. It
// hands out hand-written Go types; the generated ones stay private.
package tracer

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/vxtrace/vxtrace/topo"
)

// Config selects what the kernel side traces. The zero value traces every
// IP packet in every namespace.
type Config struct {
	Src, Dst           netip.Prefix // inner (or only) addresses
	OuterSrc, OuterDst netip.Prefix // VTEP addresses of encapsulated packets
	Proto              uint8
	Port               uint16
	VNI                *uint32
	VXLANPorts         []uint16 // default 4789 and 8472
	NetNS              []uint32 // namespace inodes; empty: every namespace

	TrackTTL time.Duration // default 2s
	// HeadersAfter: a followed packet's event after a silence this long
	// carries its headers again (user space may have ended its journey).
	// Default 50 ms: half the correlator's default grace.
	HeadersAfter time.Duration
	RingSize     int // bytes, a power of two; default 16 MiB
	// NoBatch writes each event to the ring on its own, as the kernel
	// makes it (tests that read the ring record by record).
	NoBatch     bool
	WakeupBytes uint32 // default: an eighth of the ring
	TCEvents    bool   // TC programs emit events too (tests, fallback)
	// TracepointsFind: the rx/tx tracepoints parse every packet to find
	// the ones the filter wants, as they must without TC. By default the
	// TC programs on the hops find them, and the tracepoints only follow
	// tracked packets across devices that have no TC program.
	TracepointsFind bool

	// Hidden switches that force each fallback, so tests can cover it.
	ForceRawTP    bool
	ForceClsact   bool
	NoTC          bool
	NoTracepoints bool // TC programs only: prog.Run tests

	Log *slog.Logger
}

// DefaultRingSize is ~160 ms of a 700k events/s flood: the reader's
// process stalls now and then for ~100 ms (its collector while the journeys
// grow, the scheduler of a node the flood keeps busy). A 10-min soak lost
// 58k events with 8 MiB, none with 16.
const DefaultRingSize = 16 << 20

// DefaultVXLANPorts are the IANA port and Linux's historic default (Flannel).
var DefaultVXLANPorts = []uint16{4789, 8472}

// Tracer owns every kernel object it creates; Close releases them all.
type Tracer struct {
	cfg    Config
	log    *slog.Logger
	spec   *ebpf.CollectionSpec // only while New loads: see its end
	maps   vxtraceMaps
	tc     tcPrograms
	links  []link.Link
	tcHops []*tcAttachment
	// devProgs: the rx/tx tracepoint programs, loaded but not attached
	// while TC on the hops finds the packets.
	devProgs []*ebpf.Program
	slotMu   sync.Mutex
	slots    map[uint32]topo.Key // hop counter slots in use
	// tcMem maps tc_slots; retired keeps the TC counts of hops whose
	// slots were freed when they went away.
	tcMem   *ebpf.Memory
	batch   *batcher // nil: every record goes to the ring on its own
	tcBuf   []byte   // eachTCSlot's reads
	retired map[topo.Key]HopCounters
	feat    Features
	closed  bool
}

type tpBTFPrograms struct {
	Rx      *ebpf.Program `ebpf:"tp_netif_receive_skb"`
	Tx      *ebpf.Program `ebpf:"tp_net_dev_start_xmit"`
	Drop    *ebpf.Program `ebpf:"tp_kfree_skb"`
	Consume *ebpf.Program `ebpf:"tp_consume_skb"`
}

type rawTPPrograms struct {
	Rx      *ebpf.Program `ebpf:"raw_netif_receive_skb"`
	Tx      *ebpf.Program `ebpf:"raw_net_dev_start_xmit"`
	Drop    *ebpf.Program `ebpf:"raw_kfree_skb"`
	Consume *ebpf.Program `ebpf:"raw_consume_skb"`
}

type tcPrograms struct {
	Ingress *ebpf.Program `ebpf:"tc_ingress"`
	Egress  *ebpf.Program `ebpf:"tc_egress"`
}

// New loads the programs and attaches the tracepoints. TC programs are
// attached per hop with AttachHops.
func New(cfg Config) (_ *Tracer, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.VXLANPorts) == 0 {
		cfg.VXLANPorts = DefaultVXLANPorts
	}
	if len(cfg.VXLANPorts) > 4 {
		return nil, fmt.Errorf("at most 4 VXLAN ports, got %d", len(cfg.VXLANPorts))
	}
	if cfg.TrackTTL <= 0 {
		cfg.TrackTTL = 2 * time.Second
	}
	if cfg.HeadersAfter <= 0 {
		cfg.HeadersAfter = 50 * time.Millisecond
	}
	if cfg.RingSize <= 0 {
		cfg.RingSize = DefaultRingSize
	}
	if cfg.RingSize&(cfg.RingSize-1) != 0 || cfg.RingSize < os.Getpagesize() {
		return nil, fmt.Errorf("ring size %d is not a power of two of at least a page", cfg.RingSize)
	}
	if cfg.WakeupBytes == 0 {
		// A wake-up costs the kernel microseconds (an IPI, a VM exit
		// here): while events flow the reader polls every DefaultFlush
		// anyway, so the kernel wakes it only for a burst that fills an
		// eighth of the ring before the next poll.
		cfg.WakeupBytes = uint32(cfg.RingSize / 8)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		// Kernels since 5.11 charge BPF memory to the cgroup; the rlimit
		// does not matter there, and it cannot be raised without
		// CAP_SYS_RESOURCE anyway.
		cfg.Log.Debug("memlock rlimit not raised", "err", err)
	}

	// t, not the result: a failed New returns nil and still closes what
	// it created.
	t := &Tracer{cfg: cfg, log: cfg.Log}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()

	if t.spec, err = specFor(cfg); err != nil {
		return nil, err
	}
	if err := t.spec.LoadAndAssign(&t.maps, nil); err != nil {
		return nil, fmt.Errorf("creating BPF maps: %w", err)
	}
	if t.tcMem, err = t.maps.TcSlots.Memory(); err != nil {
		return nil, fmt.Errorf("mapping the TC counters: %w", err)
	}
	if !cfg.NoBatch {
		if err := t.startBatching(); err != nil {
			t.feat.notice("events not batched (%v): one ring record per event", err)
		}
	}
	for _, ino := range cfg.NetNS {
		if err := t.maps.NetnsFilter.Put(ino, uint8(1)); err != nil {
			return nil, fmt.Errorf("adding namespace %d to the filter: %w", ino, err)
		}
	}

	if !cfg.NoTracepoints {
		if err := t.attachTracepoints(); err != nil {
			return nil, err
		}
		t.attachNeigh()
		t.attachOptional()
	}
	if !cfg.NoTC {
		if err := t.spec.LoadAndAssign(&t.tc, t.loadOpts()); err != nil {
			return nil, fmt.Errorf("loading TC programs: %w", verifierDetail(err))
		}
	}
	// Every program is loaded; the parsed object (instructions, BTF, line
	// info) would stay a tenth of a flooded trace's live heap, and be
	// scanned by every collection.
	t.spec = nil
	return t, nil
}

// specFor is the BPF object set up for cfg: its constants and the sizes of
// the maps that depend on the machine.
func specFor(cfg Config) (*ebpf.CollectionSpec, error) {
	spec, err := loadVxtrace()
	if err != nil {
		return nil, fmt.Errorf("loading BPF spec: %w", err)
	}
	kc, err := cfg.kernelConfig()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["cfg"].Set(kc); err != nil {
		return nil, fmt.Errorf("setting BPF config: %w", err)
	}
	spec.Maps["events"].MaxEntries = uint32(cfg.RingSize)
	spec.Maps["tc_slots"].MaxEntries = uint32(ebpf.MustPossibleCPU()) << tcSlotBits
	spec.Maps["batches"].MaxEntries = uint32(ebpf.MustPossibleCPU())
	return spec, nil
}

// loadOpts makes a second load (the TC programs) share every map of the
// first: each field of vxtraceMaps, by its ebpf tag, so a map added to the
// C cannot be left out and silently duplicated.
func (t *Tracer) loadOpts() *ebpf.CollectionOptions {
	repl := map[string]*ebpf.Map{}
	v := reflect.ValueOf(&t.maps).Elem()
	for i := 0; i < v.NumField(); i++ {
		if name := v.Type().Field(i).Tag.Get("ebpf"); name != "" {
			if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
				repl[name] = m
			}
		}
	}
	return &ebpf.CollectionOptions{MapReplacements: repl}
}

// attachTracepoints prefers BTF tracepoints and falls back to raw ones. The
// free tracepoints always attach. The device ones (rx/tx) attach now only
// when they must find packets themselves; with TC on the hops they wait in
// t.devProgs until a hop has no TC program (attachDeviceTracepoints).
func (t *Tracer) attachTracepoints() error {
	if !t.cfg.ForceRawTP {
		var p tpBTFPrograms
		err := t.spec.LoadAndAssign(&p, t.loadOpts())
		if err == nil {
			t.feat.Tracepoints = "tp_btf"
			t.devProgs = []*ebpf.Program{p.Rx, p.Tx}
			err = t.attachTracing(p.Drop, p.Consume)
			closePrograms(p.Drop, p.Consume)
			if err == nil && !t.cfg.tcPrimary() {
				err = t.attachDeviceTracepoints()
			}
			if err == nil {
				return nil
			}
			t.closeLinks()
			closePrograms(t.devProgs...)
			t.devProgs = nil
		}
		t.feat.notice("tp_btf tracepoints unavailable (%v): using raw_tp", err)
	}
	var p rawTPPrograms
	if err := t.spec.LoadAndAssign(&p, t.loadOpts()); err != nil {
		return fmt.Errorf("loading raw tracepoint programs: %w", verifierDetail(err))
	}
	t.feat.Tracepoints = "raw_tp"
	t.devProgs = []*ebpf.Program{p.Rx, p.Tx}
	err := t.attachRaw([]string{"kfree_skb", "consume_skb"}, p.Drop, p.Consume)
	closePrograms(p.Drop, p.Consume)
	if err == nil && !t.cfg.tcPrimary() {
		err = t.attachDeviceTracepoints()
	}
	return err
}

// attachDeviceTracepoints attaches the rx/tx tracepoints once. With TC on
// the hops they are needed only to follow packets across a device whose TC
// program could not attach: each costs two program runs per packet per
// device on the whole node, which a node whose hops all have TC is spared.
func (t *Tracer) attachDeviceTracepoints() error {
	if len(t.devProgs) == 0 {
		return nil
	}
	var err error
	if t.feat.Tracepoints == "raw_tp" {
		err = t.attachRaw([]string{"netif_receive_skb", "net_dev_start_xmit"}, t.devProgs...)
	} else {
		err = t.attachTracing(t.devProgs...)
	}
	closePrograms(t.devProgs...)
	t.devProgs = nil
	if err == nil {
		t.feat.DeviceTracepoints = true
	}
	return err
}

func (t *Tracer) attachRaw(names []string, progs ...*ebpf.Program) error {
	for i, prog := range progs {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: names[i], Program: prog})
		if err != nil {
			return fmt.Errorf("attaching raw tracepoint %s: %w", names[i], err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

func (t *Tracer) attachTracing(progs ...*ebpf.Program) error {
	for _, prog := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return fmt.Errorf("attaching %s: %w", prog, err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

// closePrograms releases loaded programs: once attached, their links keep
// them alive.
func closePrograms(progs ...*ebpf.Program) {
	for _, prog := range progs {
		if prog != nil {
			prog.Close()
		}
	}
}

// attachNeigh attaches the program that sees packets parked while the next
// hop's link-layer address resolves (a wait of seconds when ARP gets no
// answer, which would otherwise end their journeys as vanished before their
// drop). Each program kind loads on its own: a kernel without this
// tracepoint costs a notice, not the other tracepoints or the trace.
func (t *Tracer) attachNeigh() {
	const tp = "neigh_event_send_done"
	raw := t.feat.Tracepoints == "raw_tp"
	name := "tp_" + tp
	if raw {
		name = "raw_" + tp
	}
	prog, err := t.loadOne(name)
	if err == nil {
		if raw {
			err = t.attachRaw([]string{tp}, prog)
		} else {
			err = t.attachTracing(prog)
		}
		prog.Close()
	}
	if err != nil {
		t.feat.notice("packets waiting for ARP/NDP not shown (%s): a wait longer than --timeout ends as vanished, its drop reported apart",
			shortErr(err))
	}
}

// attachOptional tries the bridge-forward probe: fentry, then kprobe. Either
// may be refused (this project's reference kernel refuses both); that costs
// one notice, never the trace.
func (t *Tracer) attachOptional() {
	var errs []string
	if prog, err := t.loadOne("fentry_br_forward"); err == nil {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		prog.Close()
		if err == nil {
			t.links = append(t.links, l)
			t.feat.BridgeProbe = "fentry"
			return
		}
		errs = append(errs, "fentry: "+shortErr(err))
	} else {
		errs = append(errs, "fentry: "+shortErr(err))
	}
	if prog, err := t.loadOne("kprobe_br_forward"); err == nil {
		l, err := link.Kprobe("br_forward", prog, nil)
		prog.Close()
		if err == nil {
			t.links = append(t.links, l)
			t.feat.BridgeProbe = "kprobe"
			return
		}
		errs = append(errs, "kprobe: "+shortErr(err))
	} else {
		errs = append(errs, "kprobe: "+shortErr(err))
	}
	t.feat.notice("optional bridge probe not available (%s; %s): bridge hops are derived from port events",
		errs[0], errs[1])
}

// loadOne loads a single program of the collection, sharing the maps.
func (t *Tracer) loadOne(name string) (*ebpf.Program, error) {
	ps, ok := t.spec.Programs[name]
	if !ok {
		return nil, fmt.Errorf("no program %s", name)
	}
	coll := &ebpf.CollectionSpec{
		Maps:      t.spec.Maps,
		Programs:  map[string]*ebpf.ProgramSpec{name: ps},
		Variables: t.spec.Variables,
		Types:     t.spec.Types,
		ByteOrder: t.spec.ByteOrder,
	}
	c, err := ebpf.NewCollectionWithOptions(coll, *t.loadOpts())
	if err != nil {
		return nil, err
	}
	prog := c.DetachProgram(name)
	c.Close()
	return prog, nil
}

func shortErr(err error) string {
	switch {
	case errors.Is(err, os.ErrPermission):
		return "refused by the kernel (EPERM)"
	case errors.Is(err, os.ErrNotExist), errors.Is(err, ebpf.ErrNotSupported):
		return "not supported by this kernel"
	}
	return err.Error()
}

func verifierDetail(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%+v", ve)
	}
	return err
}

// Features reports what the kernel allowed.
func (t *Tracer) Features() Features { return t.feat }

// Close detaches and unloads everything. It is safe to call more than once.
func (t *Tracer) Close() error {
	if t == nil || t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	// Each detach waits for the kernel; overlapping them keeps Ctrl-C
	// quick on a node with many hops.
	hopErrs := make([]error, len(t.tcHops))
	var wg sync.WaitGroup
	for i, a := range t.tcHops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hopErrs[i] = a.close()
		}()
	}
	wg.Wait()
	errs = append(errs, hopErrs...)
	t.tcHops = nil
	t.closeLinks()
	closePrograms(t.tc.Ingress, t.tc.Egress)
	closePrograms(t.devProgs...)
	t.devProgs = nil
	t.batch.close()
	t.batch = nil
	errs = append(errs, t.maps.Close())
	return errors.Join(errs...)
}

func (t *Tracer) closeLinks() {
	for i := len(t.links) - 1; i >= 0; i-- {
		t.links[i].Close()
	}
	t.links = nil
}

// AddNetNS adds namespaces to the in-kernel scope of a running trace (a
// restarted container gets a new namespace). It does nothing for a trace of
// every namespace.
func (t *Tracer) AddNetNS(inodes ...uint32) error {
	if len(t.cfg.NetNS) == 0 {
		return nil
	}
	for _, ino := range inodes {
		if err := t.maps.NetnsFilter.Put(ino, uint8(1)); err != nil {
			return fmt.Errorf("adding namespace %d to the filter: %w", ino, err)
		}
	}
	return nil
}
