package report

import (
	"cmp"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/vxtrace/vxtrace/journey"
	"github.com/vxtrace/vxtrace/topo"
)

// DefaultMaxPackets caps the packets a document keeps: a thousand journeys
// is more than anyone reads, and keeps the end-of-trace write quick. The
// summary counts every packet.
const DefaultMaxPackets = 1000

// Options configure a Recorder.
type Options struct {
	Node    string    // default: the hostname
	Started time.Time // default: now
	Filter  Filter
	// MaxPackets caps the packets kept in the document; the rest are
	// counted in packets_omitted and in the summary. 0 means
	// DefaultMaxPackets, a negative value no cap.
	MaxPackets int
	// Namer names drop reasons in the per-hop summary; nil leaves them
	// numeric ("reason_<N>").
	Namer journey.Namer
}

// Recorder accumulates packets for one document. It is not safe for
// concurrent use.
type Recorder struct {
	o        Options
	packets  []Packet
	omitted  int
	verdicts VerdictCounts
}

// NewRecorder starts a document.
func NewRecorder(o Options) *Recorder {
	if o.Node == "" {
		o.Node, _ = os.Hostname()
	}
	if o.Started.IsZero() {
		o.Started = time.Now()
	}
	if o.MaxPackets == 0 {
		o.MaxPackets = DefaultMaxPackets
	}
	return &Recorder{o: o, packets: []Packet{}}
}

// Add records a packet. It copies what it keeps, so it may be called inside
// a correlator's emit.
func (r *Recorder) Add(p *journey.Packet) {
	if r.count(string(p.Verdict)) {
		r.packets = append(r.packets, FromJourney(p))
	}
}

// AddPacket records a packet already converted with FromJourney or
// FillFromJourney, for callers that convert it anyway (to print it): one
// conversion per packet. It clones what it keeps, so p may be reused.
func (r *Recorder) AddPacket(p *Packet) {
	if r.count(p.Verdict) {
		r.packets = append(r.packets, p.Clone())
	}
}

// count counts a verdict and says whether the packet itself is kept.
func (r *Recorder) count(verdict string) bool {
	switch journey.Verdict(verdict) {
	case journey.Delivered:
		r.verdicts.Delivered++
	case journey.Dropped:
		r.verdicts.Dropped++
	case journey.LeftNode:
		r.verdicts.LeftNode++
	default:
		r.verdicts.Vanished++
	}
	if r.Full() {
		r.omitted++
		return false
	}
	return true
}

// Full says whether the recorder keeps no more packets, only counts them.
func (r *Recorder) Full() bool {
	return r.o.MaxPackets >= 0 && len(r.packets) >= r.o.MaxPackets
}

// Packets is the number of packets added so far.
func (r *Recorder) Packets() int { return len(r.packets) + r.omitted }

// End is what is known only when the trace is over.
type End struct {
	Ended  time.Time  // default: now
	Hops   []topo.Hop // the topology, including hops found during the trace
	Counts []HopCount // the tracer's per-hop kernel counters
	Lost   LostEvents // Total is computed
}

// Doc produces the document. It may be called more than once (e.g. for a
// live view); each call returns an independent copy of the packets.
func (r *Recorder) Doc(e End) *Doc {
	if e.Ended.IsZero() {
		e.Ended = time.Now()
	}
	lost := e.Lost
	lost.Total = lost.Kernel + lost.User
	hops := slices.Clone(e.Hops)
	if hops == nil {
		hops = []topo.Hop{}
	}
	return &Doc{
		Schema: Schema,
		Node:   r.o.Node,
		// JSON keeps neither the monotonic reading nor the zone name:
		// normalise so that a document equals itself read back.
		Started:        r.o.Started.Round(0).UTC(),
		Ended:          e.Ended.Round(0).UTC(),
		Filter:         r.o.Filter,
		Hops:           hops,
		Packets:        slices.Clone(r.packets),
		PacketsOmitted: r.omitted,
		Summary: Summary{
			Packets:  r.Packets(),
			Verdicts: r.verdicts,
			PerHop:   perHop(hops, e.Counts, r.o.Namer),
		},
		LostEvents: lost,
	}
}

// perHop lists every hop of the topology, counters or not (a hop that saw
// nothing is a finding), then the interfaces outside it that have counts.
func perHop(hops []topo.Hop, counts []HopCount, namer journey.Namer) []HopSummary {
	byKey := make(map[topo.Key]HopCount, len(counts))
	for _, c := range counts {
		prev := byKey[c.Key]
		prev.Key = c.Key
		prev.Seen += c.Seen
		prev.Dropped += c.Dropped
		if len(c.Reasons) > 0 && prev.Reasons == nil {
			prev.Reasons = make(map[uint32]uint64)
		}
		for code, n := range c.Reasons {
			prev.Reasons[code] += n
		}
		byKey[c.Key] = prev
	}
	out := make([]HopSummary, 0, len(hops)+len(byKey))
	known := make(map[topo.Key]bool, len(hops))
	for i := range hops {
		h := &hops[i]
		k := h.Key()
		known[k] = true
		c := byKey[k]
		out = append(out, HopSummary{
			Hop:         h.ID,
			Ifname:      h.Ifname,
			NetNS:       h.NetNS.Inode,
			Seen:        c.Seen,
			Dropped:     c.Dropped,
			DropReasons: reasonNames(c.Reasons, namer),
		})
	}
	var extra []topo.Key
	for k := range byKey {
		if !known[k] {
			extra = append(extra, k)
		}
	}
	slices.SortFunc(extra, func(a, b topo.Key) int {
		return cmp.Or(cmp.Compare(a.NetNS, b.NetNS), cmp.Compare(a.Ifindex, b.Ifindex))
	})
	for _, k := range extra {
		c := byKey[k]
		name := ""
		if k.Ifindex != 0 {
			name = "if" + strconv.FormatUint(uint64(k.Ifindex), 10)
		}
		out = append(out, HopSummary{
			Hop:         -1,
			Ifname:      name,
			NetNS:       k.NetNS,
			Seen:        c.Seen,
			Dropped:     c.Dropped,
			DropReasons: reasonNames(c.Reasons, namer),
		})
	}
	return out
}

func reasonNames(codes map[uint32]uint64, namer journey.Namer) map[string]uint64 {
	out := make(map[string]uint64, len(codes))
	for code, n := range codes {
		name := "reason_" + strconv.FormatUint(uint64(code), 10)
		if namer != nil {
			name = namer.DropReason(code)
		}
		out[name] += n
	}
	return out
}
