package kernels

import (
	"fmt"
	"sync"
)

// Opts selects how a kernel runs. The zero value is the deterministic default: the portable
// code on the calling goroutine.
type Opts struct {
	// Threads is the number of goroutines a kernel may use; values <= 1 mean the calling
	// goroutine only. Work is split by output rows, columns, heads or groups only, never
	// along a reduction axis, so the portable path gives the same bits for every value.
	Threads int
	// Fast allows the platform's fast path for matrix products where one exists (amd64
	// AVX-512 assembly unless built with -tags purego). It uses FMA and another summation
	// order, so it is not bit-identical to the portable path; see Gemm for the bound.
	// Without a fast path it silently runs the portable code.
	Fast bool
	// BF16 makes PackWeights store weights as bfloat16 and LinearPacked round the other
	// operand to bf16, with float32 products and sums (bf16.go: VDPBF16PS on AVX512_BF16,
	// else emulated over the float32 kernel Fast selects). Every other kernel, and Gemm and
	// Linear on unpacked operands, ignore it.
	BF16 bool
}

func (o Opts) threads() int {
	if o.Threads < 1 {
		return 1
	}
	return o.Threads
}

// Work estimates, in nanoseconds of one core, for parallelWork: one element of a simple
// elementwise pass, one element of a normalisation (two passes and a sqrt per row), one
// element of an exp-based activation.
const (
	nsElem = 1.0
	nsNorm = 3.0
	nsExp  = 4.0
)

// minWork is the least work, in nanoseconds of one core as the callers estimate it, worth a
// goroutine of its own. Waking a parked thread for it can take tens of microseconds (on the
// 2-vCPU VM of docs/benchmarks.md a split cost about 19 µs), so the default model's decode,
// whose ops each take microseconds, ran 10% slower on two threads than on one until its ops
// stopped being split.
// The package's tests set it to 0, so that their small shapes still run split.
var minWork = defaultMinWork

const defaultMinWork = 100_000.0

// parallelWork is parallel with no more goroutines than n·cost/minWork (at least one), cost
// being one item's estimated work in nanoseconds. Like parallel, the split never changes a bit.
func parallelWork(threads, n int, cost float64, fn func(lo, hi int)) {
	if w := float64(n) * cost / minWork; w < float64(threads) {
		threads = max(1, int(w))
	}
	parallel(threads, n, fn)
}

// parallel splits [0,n) into at most threads contiguous chunks and runs fn on each, the last
// chunk on the calling goroutine. Chunk boundaries depend on threads, so fn must give results
// that do not depend on where a chunk starts.
func parallel(threads, n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if threads > n {
		threads = n
	}
	if threads <= 1 {
		fn(0, n)
		return
	}
	var (
		wg      sync.WaitGroup
		once    sync.Once
		panicky any
	)
	for t := 0; t < threads-1; t++ {
		lo, hi := n*t/threads, n*(t+1)/threads
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A panic on a worker would end the process, out of reach of the caller's
			// recover (sdk/service turns panics into error responses): carry it back.
			defer func() {
				if r := recover(); r != nil {
					once.Do(func() { panicky = r })
				}
			}()
			fn(lo, hi)
		}()
	}
	fn(n*(threads-1)/threads, n)
	wg.Wait()
	if panicky != nil {
		panic(panicky)
	}
}

// need panics with a clear message when a slice is shorter than a shape requires.
func need(op, name string, s []float32, n int) {
	if len(s) < n {
		panic(fmt.Sprintf("flextok/kernels: %s: len(%s) = %d, shape needs %d", op, name, len(s), n))
	}
}

// needDims panics when a dimension is negative.
func needDims(op string, dims ...int) {
	for _, d := range dims {
		if d < 0 {
			panic(fmt.Sprintf("flextok/kernels: %s: negative dimension in %v", op, dims))
		}
	}
}

// strided returns the length a row-strided matrix of rows x cols with row stride ld needs.
func strided(rows, cols, ld int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	return (rows-1)*ld + cols
}

var bufPool sync.Pool // of *[]float32

// getBuf returns a scratch slice of length n (contents undefined); give it back with putBuf.
func getBuf(n int) *[]float32 {
	if p, ok := bufPool.Get().(*[]float32); ok {
		if cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
	}
	s := make([]float32, n)
	return &s
}

func putBuf(p *[]float32) { bufPool.Put(p) }
