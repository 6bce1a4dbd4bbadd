package tracer

import "fmt"

// Features says which mechanism the running kernel accepted for each kind
// of probe, and carries the one-line notices for anything optional that it
// refused.
type Features struct {
	Tracepoints string `json:"tracepoints"` // "tp_btf" or "raw_tp"
	// DeviceTracepoints: the rx/tx tracepoints are attached (without TC,
	// or because a hop's TC program could not attach).
	DeviceTracepoints bool     `json:"device_tracepoints,omitempty"`
	TC                string   `json:"tc,omitempty"`           // "tcx" or "clsact" once a hop is attached
	BridgeProbe       string   `json:"bridge_probe,omitempty"` // "fentry", "kprobe" or ""
	Notices           []string `json:"notices,omitempty"`
}

func (f *Features) notice(format string, args ...any) {
	f.Notices = append(f.Notices, fmt.Sprintf(format, args...))
}
