package engine

import (
	"runtime"

	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Options control how the pure-Go engine runs. The zero value is the deterministic reference:
// portable kernels on every CPU, bit-identical natively and in WebAssembly. Servers that do not
// need those bits set Fast (DefaultOptions), which is several times faster on AVX-512 CPUs.
type Options struct {
	// Threads is the number of goroutines the engine may use (0: runtime.GOMAXPROCS, every
	// CPU; 1: one). Large models split kernel calls by rows, heads or pixels; small ones (under
	// 2 GFLOP per image) share whole images and velocity items. Nothing is split along a
	// reduction, so the result does not depend on it.
	Threads int
	// Fast allows the platform's fast matrix-product path (amd64 AVX-512). It is not
	// bit-identical to the portable path; see sdk/internal/kernels for its bound.
	Fast bool
	// Hints, if set, replace the model's own decode hints (its config's decode_hints) in the
	// payloads Encode makes and as the defaults of DecodeOptions' zero fields. They do not
	// affect the kernels.
	Hints *payload.Hints
	// Name, if set, replaces the model's own name (its config's name, or one derived from its
	// digest) in the payloads Encode makes. Names are descriptive: payloads are matched to
	// models by digest, so this never makes a payload decodable or not.
	Name string
}

// DefaultOptions uses every CPU and the fast path: what a server wants.
func DefaultOptions() Options { return Options{Threads: runtime.GOMAXPROCS(0), Fast: true} }

func (o Options) kernels() kernels.Opts {
	t := o.Threads
	if t <= 0 {
		t = runtime.GOMAXPROCS(0)
	}
	return kernels.Opts{Threads: t, Fast: o.Fast}
}
