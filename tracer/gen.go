package tracer

//go:generate go tool bpf2go -tags linux -target amd64 -type vx_event vxtrace ../bpf/vxtrace.c -- -I../headers -I../bpf -Wall -Werror -O2 -g
