package engine

import (
	"runtime"

	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Options control how the pure-Go engine runs. The zero value is the deterministic reference:
// portable kernels on one goroutine, bit-identical natively and in WebAssembly.
type Options struct {
	// Threads is the number of goroutines the engine may use (0 or 1: one). Large models split
	// kernel calls by rows, heads or pixels; small ones (under 2 GFLOP per image) share whole
	// images and velocity items. Nothing is split along a reduction, so the result does not
	// depend on it.
	Threads int
	// Fast allows the platform's fast matrix-product path (amd64 AVX-512). It is not
	// bit-identical to the portable path; see sdk/internal/kernels for its bound.
	Fast bool
	// Hints, if set, are written into every payload Encode makes: the decode settings that suit
	// the model (the SDK's default model decodes best with 10 steps of CFG 1.5), which
	// DefaultDecodeOptions then uses. They do not affect the kernels.
	Hints *payload.Hints
}

// DefaultOptions uses every CPU and the fast path: what a server wants.
func DefaultOptions() Options { return Options{Threads: runtime.GOMAXPROCS(0), Fast: true} }

func (o Options) kernels() kernels.Opts { return kernels.Opts{Threads: o.Threads, Fast: o.Fast} }
