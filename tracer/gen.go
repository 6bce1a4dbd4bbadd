package tracer

// -mcpu=v3: the tracked table claims and frees its entries with
// compare-and-swap (BPF atomics: kernel 5.12 or later).
//
//go:generate go tool bpf2go -tags linux -target amd64 -type vx_event -type vx_state -type vx_hop_slot -type vx_batch -type vx_event_flags vxtrace ../bpf/vxtrace.c -- -I../headers -I../bpf -Wall -Werror -O2 -mcpu=v3 -g
