#!/usr/bin/env bash
# Regenerates the vendored BPF headers: vmlinux.h from the running kernel's BTF
# and the libbpf helper headers from the system libbpf-dev package. The output is
# committed so that `make generate` gives the same objects on every machine.
set -euo pipefail
cd "$(dirname "$0")"
bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h
mkdir -p bpf
for f in bpf_helpers.h bpf_helper_defs.h bpf_tracing.h bpf_core_read.h bpf_endian.h; do
	cp "/usr/include/bpf/$f" "bpf/$f"
done
