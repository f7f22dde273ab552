package engine

import (
	"runtime"

	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
)

// Options control how the pure-Go engine runs. The zero value is the deterministic reference:
// portable kernels on one goroutine, bit-identical natively and in WebAssembly.
type Options struct {
	// Threads is the number of goroutines kernels may use (0 or 1: one). Work is split by
	// rows, never along a reduction, so the result does not depend on it.
	Threads int
	// Fast allows the platform's fast matrix-product path (amd64 AVX-512). It is not
	// bit-identical to the portable path; see sdk/internal/kernels for its bound.
	Fast bool
}

// DefaultOptions uses every CPU and the fast path: what a server wants.
func DefaultOptions() Options { return Options{Threads: runtime.GOMAXPROCS(0), Fast: true} }

func (o Options) kernels() kernels.Opts { return kernels.Opts{Threads: o.Threads, Fast: o.Fast} }
