package engine

import (
	"fmt"
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
	// Precision is the arithmetic of the decoder's weight products: FP32 (the zero value) or
	// BF16, weights stored as bfloat16 (half the memory) and activations rounded to bf16 per
	// panel, with float32 products and sums: VDPBF16PS on CPUs with AVX512_BF16, else the
	// same arithmetic over the float32 kernels (slower than FP32 there, but with the memory
	// saving). It applies to the decoder's Linear layers (register and patch embedding, the
	// trunk's attention and MLP projections and adaLN modulation, the head) and the VAE
	// decoder's convolutions; norms, softmax, attention scores, residuals, the time embedding,
	// the VAE's attention and the sampler stay float32.
	// The encoder always runs in float32, so token ids never depend on it. See
	// docs/benchmarks.md for its measured error and speed.
	Precision Precision
	// Parts says which halves of the model the engine loads: AllParts (the zero value), or
	// DecodeOnly or EncodeOnly for deployments that never run the other direction (a
	// detokenizing server, generation; a tokenizer). The weights of the half left out are
	// never converted or kept, and are not checked for NaNs; the identity still covers every
	// tensor of the checkpoint, so payloads are matched to models as with AllParts. Encoding
	// on a DecodeOnly engine (decoding on an EncodeOnly one) fails with an error wrapping
	// ErrUnsupported that names this option.
	Parts Parts
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
	return kernels.Opts{Threads: t, Fast: o.Fast, BF16: o.Precision == BF16}
}

// Precision is the arithmetic of the decoder's weight products (Options.Precision).
type Precision uint8

const (
	// FP32 is float32 weights and products: the default, and the reference.
	FP32 Precision = iota
	// BF16 is bfloat16 weights and activations with float32 products and sums.
	BF16
)

// String returns "fp32" or "bf16", the names ParsePrecision takes.
func (p Precision) String() string {
	switch p {
	case FP32:
		return "fp32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("Precision(%d)", uint8(p))
}

// ParsePrecision reads "fp32" or "bf16" (the CLI's --precision and the server's setting).
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "fp32":
		return FP32, nil
	case "bf16":
		return BF16, nil
	}
	return 0, fmt.Errorf("%w: precision %q: want fp32 or bf16", ErrArgument, s)
}

// check refuses a Precision value outside the constants.
func (p Precision) check() error {
	if p > BF16 {
		return fmt.Errorf("%w: %v: want FP32 or BF16", ErrArgument, p)
	}
	return nil
}

// Parts says which halves of a model an engine loads (Options.Parts).
type Parts uint8

const (
	// AllParts loads the encoder (VAE encoder and transformer) and the decoder (transformer
	// and VAE decoder): the default.
	AllParts Parts = iota
	// DecodeOnly loads the decoder and the VAE decoder only: Encode and EncodeBatch fail.
	DecodeOnly
	// EncodeOnly loads the encoder and the VAE encoder only: Decode and DecodeBatch fail.
	EncodeOnly
)

// String returns "all", "decode" or "encode", the names ParseParts takes.
func (p Parts) String() string {
	switch p {
	case AllParts:
		return "all"
	case DecodeOnly:
		return "decode"
	case EncodeOnly:
		return "encode"
	}
	return fmt.Sprintf("Parts(%d)", uint8(p))
}

// ParseParts reads "all", "decode" or "encode" (a server's or a tool's setting).
func ParseParts(s string) (Parts, error) {
	for _, p := range []Parts{AllParts, DecodeOnly, EncodeOnly} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: parts %q: want all, decode or encode", ErrArgument, s)
}

// check refuses a Parts value outside the constants.
func (p Parts) check() error {
	if p > EncodeOnly {
		return fmt.Errorf("%w: %v: want AllParts, DecodeOnly or EncodeOnly", ErrArgument, p)
	}
	return nil
}

// goName is the constant's Go name, for error messages.
func (p Parts) goName() string {
	switch p {
	case AllParts:
		return "AllParts"
	case DecodeOnly:
		return "DecodeOnly"
	case EncodeOnly:
		return "EncodeOnly"
	}
	return p.String()
}

// encodes and decodes say whether the engine loads that half of the model.
func (p Parts) encodes() bool { return p != DecodeOnly }
func (p Parts) decodes() bool { return p != EncodeOnly }

// BF16Path names the kernel Precision BF16 runs with Fast on this CPU: "avx512bf16-12x32"
// (VDPBF16PS) or "bf16-on-" and the float32 kernel it is emulated on.
func BF16Path() string { return kernels.BF16Path() }
