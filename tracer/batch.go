package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Each CPU's batch of records (struct vx_batch): the programs write a CPU's
// events to the ring up to batchBytes at a time (at most batchEvents, all
// heads), and user space flushes the batches left waiting.
const (
	batchSize   = 2048 // sizeof(struct vx_batch)
	batchBytes  = batchSize - 8
	batchEvents = batchBytes / EventHeadSize
)

// batcher flushes the CPUs' batches: it runs flush_batch on each CPU whose
// batch waits, which a program cannot do for a CPU that went quiet.
type batcher struct {
	prog *ebpf.Program
	mem  *ebpf.Memory
	cpus int
}

// startBatching loads flush_batch, runs it once to learn that the kernel
// runs it on a chosen CPU, and turns batching on. Without it every record
// goes to the ring on its own, as before batching: slower, never wrong.
func (t *Tracer) startBatching() (err error) {
	var p struct {
		Flush *ebpf.Program `ebpf:"flush_batch"`
	}
	if err := t.spec.LoadAndAssign(&p, t.loadOpts()); err != nil {
		return fmt.Errorf("loading the batch flush program: %w", verifierDetail(err))
	}
	defer func() {
		if err != nil {
			p.Flush.Close()
		}
	}()
	mem, err := t.maps.Batches.Memory()
	if err != nil {
		return fmt.Errorf("mapping the batches: %w", err)
	}
	b := &batcher{prog: p.Flush, mem: mem, cpus: int(t.maps.Batches.MaxEntries())}
	if err := b.run(0); err != nil {
		return err
	}
	if err := t.maps.State.Update(uint32(vxtraceVxStateVX_STATE_BATCH), uint64(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("turning batching on: %w", err)
	}
	t.batch = b
	return nil
}

var errBatchBusy = errors.New("batch in use")

func (b *batcher) run(cpu int) error {
	ret, err := b.prog.Run(&ebpf.RunOptions{CPU: uint32(cpu), Flags: unix.BPF_F_TEST_RUN_ON_CPU})
	if err != nil {
		return fmt.Errorf("flushing the batch of CPU %d: %w", cpu, err)
	}
	if ret != 0 {
		return errBatchBusy
	}
	return nil
}

// flush writes the batches whose first event is at least minAge old at
// now to the ring. A flush runs the program on the batch's CPU (an IPI, and
// the reader's thread waits for it: ~0.2 ms of the tracer's CPU in this
// guest), so a batch that its CPU's next packet will flush within
// microseconds is left alone. It returns the stamp of the oldest event left
// waiting, or 0 (always with no batches: b nil).
func (b *batcher) flush(now, minAge uint64) (waiting uint64) {
	if b == nil {
		return 0
	}
	var head [16]byte // len, n, busy, the first event's stamp
	for cpu := range b.cpus {
		off := int64(cpu) * batchSize
		if _, err := b.mem.ReadAt(head[:], off); err != nil {
			return 0
		}
		if binary.LittleEndian.Uint32(head[0:]) == 0 {
			continue
		}
		ts := binary.LittleEndian.Uint64(head[8:])
		// An offline CPU (ENXIO) holds no events.
		if ts+minAge > now || errors.Is(b.run(cpu), errBatchBusy) {
			if waiting == 0 || ts < waiting {
				waiting = ts
			}
		}
	}
	return waiting
}

func (b *batcher) close() {
	if b != nil {
		b.prog.Close()
	}
}
