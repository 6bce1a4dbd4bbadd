package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The soak parses this file with the same format: a change here must be
// made in bench/soak.go too.
func TestWriteMemStats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mem")
	done := make(chan struct{})
	exited := make(chan struct{})
	keep := make([][]byte, 0, 64)
	go func() { writeMemStats(path, 10*time.Millisecond, done); close(exited) }()
	var live, objects, goal, mapped, gcs uint64
	for i := 0; ; i++ {
		// Garbage, so that collections happen and the figures move.
		keep = append(keep[:0], make([]byte, 1<<20))
		b, err := os.ReadFile(path)
		if err == nil {
			if _, err := fmt.Sscanf(string(b), "live=%d objects=%d goal=%d mapped=%d gcs=%d\n",
				&live, &objects, &goal, &mapped, &gcs); err != nil {
				t.Fatalf("%q: %v", b, err)
			}
			if gcs > 0 {
				break
			}
		}
		if i > 500 {
			t.Fatalf("no snapshot after a collection: last %q, %v", b, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(done)
	<-exited
	_ = keep
	if live == 0 || objects == 0 || goal < live || mapped < objects {
		t.Errorf("implausible: live %d objects %d goal %d mapped %d", live, objects, goal, mapped)
	}
	if _, err := os.Stat(path + ".tmp"); err == nil {
		t.Errorf("temporary file left behind")
	}
}
