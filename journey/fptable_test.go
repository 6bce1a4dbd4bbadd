package journey

import (
	"math/rand/v2"
	"testing"
)

// The table against Go's map under random puts, gets and deletes, in a
// table small enough that runs are long and wrap past its end, and with
// keys that share home slots: a delete that shifts the wrong entry (or
// none) leaves one that get no longer finds.
func TestFPTableMatchesMap(t *testing.T) {
	for _, max := range []int{1, 3, 8, 64} {
		tb := newFPTable(max)
		ref := map[uint64]*journey{}
		rng := rand.New(rand.NewPCG(uint64(max), 7))
		// Keys drawn from a few times the capacity, 0 among them (a
		// fingerprint may be 0; an empty slot is told by its journey).
		keys := make([]uint64, 3*max+2)
		for i := range keys {
			keys[i] = rng.Uint64()
		}
		keys[0] = 0
		// A third of them at home in the last slot: their run wraps.
		for i := 2; i < len(keys); i += 3 {
			for tb.home(keys[i]) != tb.mask {
				keys[i] = rng.Uint64()
			}
		}
		wrapped := false
		for op := range 20000 {
			k := keys[rng.IntN(len(keys))]
			switch _, in := ref[k]; {
			case !in && len(ref) < max && rng.IntN(2) == 0:
				j := &journey{}
				tb.put(k, j)
				ref[k] = j
			case in && rng.IntN(2) == 0:
				tb.delete(k)
				delete(ref, k)
			default:
				tb.delete(k + 1) // absent, or another key: either way a no-op unless present
				if _, in := ref[k+1]; in {
					delete(ref, k+1)
				}
			}
			if tb.len() != len(ref) {
				t.Fatalf("max %d op %d: len %d, want %d", max, op, tb.len(), len(ref))
			}
			for _, k := range keys {
				if got := tb.get(k); got != ref[k] {
					t.Fatalf("max %d op %d: get(%#x) = %p, want %p", max, op, k, got, ref[k])
				}
			}
			for i, s := range tb.slots {
				if s.j != nil && tb.home(s.fp) > uint64(i) {
					wrapped = true
				}
			}
		}
		if max >= 3 && !wrapped {
			t.Errorf("max %d: no run ever wrapped past the table's end: the test missed that case", max)
		}
	}
}

// The table holds max journeys at a load of at most one half.
func TestFPTableSize(t *testing.T) {
	for _, c := range []struct{ max, size int }{{1, 2}, {2, 4}, {3, 8}, {16384, 32768}, {16385, 65536}} {
		if got := len(newFPTable(c.max).slots); got != c.size {
			t.Errorf("max %d: %d slots, want %d", c.max, got, c.size)
		}
	}
}
