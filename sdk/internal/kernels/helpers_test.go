package kernels

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// u is the float32 unit roundoff: a correctly rounded float32 operation has relative error <= u.
const u = 1.0 / (1 << 24)

// randSlice returns n values in [-scale, scale) from a seeded PCG. The values are built from
// integers (k / 2^23), so they are the same on every platform.
func randSlice(r *rand.Rand, n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(int32(r.Uint32()>>8)-(1<<23)) / (1 << 23) * scale
	}
	return s
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// within fails the test at the first element whose |got-want| exceeds tol(i).
func within(t *testing.T, what string, got []float32, want []float64, tol func(i int) float64) {
	t.Helper()
	if len(got) < len(want) {
		t.Fatalf("%s: len %d < %d", what, len(got), len(want))
	}
	for i, w := range want {
		g := float64(got[i])
		if d := math.Abs(g - w); !(d <= tol(i)) {
			t.Fatalf("%s: [%d] = %v, want %v (|diff| %.3g > bound %.3g)", what, i, g, w, d, tol(i))
		}
	}
}

// sameBits fails unless a and b are bitwise equal.
func sameBits(t *testing.T, what string, a, b []float32) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: lengths %d and %d", what, len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("%s: element %d differs: %v vs %v", what, i, a[i], b[i])
		}
	}
}

// The tests' shapes are small: without this they would all run on one goroutine and the
// thread-count checks would check nothing. TestParallelWork restores the real value.
func init() { minWork = 0 }

// TestParallelWork: with the real threshold a job too small to share runs on the calling
// goroutine alone, and a large one is split across the threads.
func TestParallelWork(t *testing.T) {
	saved := minWork
	minWork = defaultMinWork
	defer func() { minWork = saved }()
	count := func(n int, cost float64) int {
		var mu sync.Mutex
		calls := 0
		parallelWork(4, n, cost, func(lo, hi int) {
			mu.Lock()
			calls++
			mu.Unlock()
		})
		return calls
	}
	if c := count(64, 100); c != 1 { // 6.4 µs of work
		t.Fatalf("a 6.4 µs job ran in %d parts", c)
	}
	if c := count(64, 4000); c != 2 { // 256 µs: two parts of at least 100 µs
		t.Fatalf("a 256 µs job ran in %d parts, want 2", c)
	}
	if c := count(64, 1e6); c != 4 {
		t.Fatalf("a 64 ms job ran in %d parts, want 4", c)
	}
}

// TestParallelPanic: a panic on a worker goroutine reaches the caller, where it can be
// recovered, instead of ending the process.
func TestParallelPanic(t *testing.T) {
	defer func() {
		if r := recover(); r != "chunk 0" {
			t.Fatalf("recovered %v, want the worker's panic", r)
		}
	}()
	parallel(4, 4, func(lo, hi int) {
		if lo == 0 {
			panic("chunk 0")
		}
	})
	t.Fatal("no panic reached the caller")
}
