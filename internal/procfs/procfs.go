// Package procfs reads what /proc says about BPF objects held by processes.
package procfs

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// HeldPrograms returns the IDs of the BPF programs that a live process
// holds through a file descriptor, directly or through a link. A BPF object
// that no process holds and nothing pins or attaches is freed by the kernel;
// one that only a legacy attachment holds outlived its owner.
func HeldPrograms() map[uint32]bool {
	held := map[uint32]bool{}
	fdinfos, _ := filepath.Glob("/proc/[0-9]*/fdinfo/[0-9]*")
	for _, p := range fdinfos {
		f, err := os.Open(p)
		if err != nil {
			continue // the process or the descriptor is gone
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "prog_id:"); ok {
				if id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
					held[uint32(id)] = true
				}
			}
		}
		f.Close()
	}
	return held
}
