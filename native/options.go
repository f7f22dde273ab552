package native

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Provider names an ONNX Runtime execution provider.
type Provider string

const (
	// ProviderAuto tries CUDA and falls back to the CPU, logging why (once per process).
	ProviderAuto Provider = "auto"
	// ProviderCUDA requires the CUDA execution provider; failing to get it is an error.
	ProviderCUDA Provider = "cuda"
	// ProviderCPU uses only the CPU execution provider.
	ProviderCPU Provider = "cpu"
)

// Options configures the ONNX Runtime library (Init) and the sessions made with it.
type Options struct {
	// LibraryPath is the ONNX Runtime shared library. "" means $FLEXTOK_ORT_LIB, then
	// "libonnxruntime.so" ("libonnxruntime.dylib" on macOS) through the dynamic loader's
	// search path. Once a library is loaded, "" means that library.
	LibraryPath string
	// Provider is the execution provider; "" means ProviderAuto.
	Provider Provider
	// CUDADevice is the CUDA device ordinal (provider option device_id).
	CUDADevice int
	// CUDAMemLimit caps the CUDA provider's memory arena, in bytes (gpu_mem_limit); 0 means
	// no limit.
	CUDAMemLimit int64
	// IntraOpThreads and InterOpThreads size the session's thread pools; 0 means ONNX
	// Runtime's default (one thread per physical core for IntraOp). InterOp threads only
	// matter in parallel execution mode, which sessions here do not enable.
	IntraOpThreads, InterOpThreads int
	// Logf receives the reason a provider was or was not used; nil means log.Printf.
	Logf func(format string, args ...any)

	// Backend settings (Load, LoadBytes, New).

	// Hints, if set, replace the model's decode hints in every payload the Backend encodes (as
	// engine.Options.Hints).
	Hints *payload.Hints
	// Name, if set, replaces the model's name in the payloads it encodes (as
	// engine.Options.Name; names are descriptive, payloads match models by digest).
	Name string
	// FP16 exports the decoder's Linear layers in float16 (weights and products; norms,
	// softmax and residuals stay float32): for GPUs, where it halves the decoder's weight
	// memory and runs on tensor cores. Velocities then differ from float32 by NMSE ~1e-7
	// (native/onnx tests). The encoder and the VAE stay float32, so token ids do not change.
	FP16 bool
	// ImageSize is the side in pixels of the square images the graphs are exported for: 0 for
	// the model's own size (engine.Engine.ImageSize), else any size the model runs at
	// (model.Geometry). ONNX graphs have fixed spatial sizes, so the Backend encodes and
	// decodes at this size only, and refuses payloads of another.
	ImageSize int
	// ExportDir, if set, caches the exported graphs: <ExportDir>/<name>-<digest>-e<exporter
	// version>[-s<size>][-fp16]/ (the size when it is not the model's own){encoder,decoder,vae_decoder}.onnx (+ .onnx.data). A later Load of the
	// same weights with the same settings opens them without exporting again (a server's
	// restart). "" means no cache: graphs under onnx.MaxInline bytes go to ONNX Runtime from
	// memory, larger ones through a temporary directory that Close removes.
	ExportDir string
	// Parts says which graphs the Backend exports and opens (as engine.Options.Parts):
	// engine.AllParts (the zero value), engine.DecodeOnly (the decoder and VAE decoder
	// graphs: Encode fails) or engine.EncodeOnly (the encoder graph: Decode fails).
	Parts engine.Parts
}

// ErrNoCgo is returned by every constructor of a build without cgo.
var ErrNoCgo = errors.New("flextok/native: built without cgo; ONNX Runtime needs CGO_ENABLED=1")

// ErrLibrary is wrapped by the errors of a library that is missing, is not an ONNX Runtime
// shared library, or is older than the binding needs (errors.Is(err, ErrLibrary)).
var ErrLibrary = errors.New("flextok/native: ONNX Runtime library unusable")

// ErrClosed is returned by Session.Run after Close.
var ErrClosed = errors.New("flextok/native: session closed")

// MinAPIVersion is the ONNX Runtime C API version (ORT_API_VERSION) of the headers
// github.com/yalue/onnxruntime_go v1.27.0 is built with; a library must provide it.
// ONNX Runtime 1.N provides C API versions 1..N.
const MinAPIVersion = 24

// MinVersion is the oldest ONNX Runtime release that provides MinAPIVersion.
var MinVersion = "1." + strconv.Itoa(MinAPIVersion) + ".0"

// Tensor is a dense tensor passed to or returned by Session.Run: the row-major data in exactly
// one of F32 and I64 (a nil and an empty slice differ: an empty F32 is a float32 tensor with
// a zero dimension). An empty Shape is a scalar (one element) as an input; outputs must have
// rank one or more.
type Tensor struct {
	Shape []int64
	F32   []float32
	I64   []int64
}

// elements returns the element count of shape, or an error naming name.
func elements(name string, shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("flextok/native: input %q: dimension %d of shape %v is negative", name, i, shape)
		}
		if d != 0 && n > (1<<62)/d {
			return 0, fmt.Errorf("flextok/native: input %q: shape %v is too large", name, shape)
		}
		n *= d
	}
	return n, nil
}

// check validates t as the input named name.
func (t Tensor) check(name string) error {
	if (t.F32 == nil) == (t.I64 == nil) {
		return fmt.Errorf("flextok/native: input %q: exactly one of F32 and I64 must be set", name)
	}
	n, err := elements(name, t.Shape)
	if err != nil {
		return err
	}
	have := len(t.F32) + len(t.I64)
	if int64(have) != n {
		return fmt.Errorf("flextok/native: input %q: shape %v holds %d elements, data has %d", name, t.Shape, n, have)
	}
	return nil
}

// checkNames validates the input or output names of a new session.
func checkNames(kind string, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("flextok/native: a session needs at least one %s name", kind)
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if n == "" {
			return fmt.Errorf("flextok/native: empty %s name", kind)
		}
		if seen[n] {
			return fmt.Errorf("flextok/native: %s %q named twice", kind, n)
		}
		seen[n] = true
	}
	return nil
}

// provider returns o's provider with "" read as auto, or an error for an unknown one.
func (o Options) provider() (Provider, error) {
	switch o.Provider {
	case "", ProviderAuto:
		return ProviderAuto, nil
	case ProviderCUDA, ProviderCPU:
		return o.Provider, nil
	}
	return "", fmt.Errorf("flextok/native: unknown provider %q (want auto, cuda or cpu)", o.Provider)
}

// check validates the session settings of o.
func (o Options) check() error {
	if _, err := o.provider(); err != nil {
		return err
	}
	switch {
	case o.CUDADevice < 0:
		return fmt.Errorf("flextok/native: CUDADevice %d is negative", o.CUDADevice)
	case o.CUDAMemLimit < 0:
		return fmt.Errorf("flextok/native: CUDAMemLimit %d is negative", o.CUDAMemLimit)
	case o.ImageSize < 0:
		return fmt.Errorf("flextok/native: ImageSize %d is negative", o.ImageSize)
	case o.Parts > engine.EncodeOnly:
		return fmt.Errorf("flextok/native: %v: want engine.AllParts, DecodeOnly or EncodeOnly", o.Parts)
	case o.IntraOpThreads < 0 || o.InterOpThreads < 0:
		return fmt.Errorf("flextok/native: thread counts must not be negative (IntraOp %d, InterOp %d)",
			o.IntraOpThreads, o.InterOpThreads)
	}
	return nil
}

func (o Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// defaultLibrary is the library name the dynamic loader searches for.
func defaultLibrary() string {
	if runtime.GOOS == "darwin" {
		return "libonnxruntime.dylib"
	}
	return "libonnxruntime.so"
}

// libraryPath resolves Options.LibraryPath: explicit, then $FLEXTOK_ORT_LIB, then the loader's
// search path. A path with a separator is made absolute (and cleaned); a bare name is left for
// the loader.
func libraryPath(p string) string {
	if p == "" {
		p = os.Getenv("FLEXTOK_ORT_LIB")
	}
	if p == "" {
		return defaultLibrary()
	}
	if strings.ContainsRune(p, filepath.Separator) || strings.ContainsRune(p, '/') {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return filepath.Clean(p)
	}
	return p
}

// samePath reports whether two resolved library paths name the same library.
func samePath(a, b string) bool {
	if a == b {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// parseVersion reads "MAJOR.MINOR.PATCH" (a pre-release or build suffix after '-' or '+' is
// ignored; a missing PATCH is 0).
func parseVersion(v string) ([3]int, error) {
	var out [3]int
	s := v
	if i := strings.IndexAny(s, "-+ "); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return out, fmt.Errorf("flextok/native: version %q is not MAJOR.MINOR.PATCH", v)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, fmt.Errorf("flextok/native: version %q is not MAJOR.MINOR.PATCH", v)
		}
		out[i] = n
	}
	return out, nil
}

// versionAtLeast reports whether version have >= want.
func versionAtLeast(have, want string) (bool, error) {
	h, err := parseVersion(have)
	if err != nil {
		return false, err
	}
	w, err := parseVersion(want)
	if err != nil {
		return false, err
	}
	for i := range h {
		if h[i] != w[i] {
			return h[i] > w[i], nil
		}
	}
	return true, nil
}

// onceLog passes each distinct message to its log function once per process: the provider
// notes would otherwise repeat for every session.
type onceLog struct {
	mu   sync.Mutex
	seen map[string]bool
}

var providerNotes onceLog

func (l *onceLog) printf(o Options, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	if l.seen[msg] {
		l.mu.Unlock()
		return
	}
	if l.seen == nil {
		l.seen = make(map[string]bool)
	}
	l.seen[msg] = true
	l.mu.Unlock()
	o.logf("%s", msg)
}

// reset forgets the messages logged so far (tests).
func (l *onceLog) reset() {
	l.mu.Lock()
	l.seen = nil
	l.mu.Unlock()
}

// cudaDown remembers, per device, why configuring the CUDA provider failed, so that later auto
// sessions go straight to the CPU (without ONNX Runtime logging the failure again). An
// explicit ProviderCUDA still tries every time.
var cudaDown deviceErrors

type deviceErrors struct {
	mu  sync.Mutex
	err map[int]error
}

func (d *deviceErrors) get(dev int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err[dev]
}

func (d *deviceErrors) set(dev int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = make(map[int]error)
	}
	d.err[dev] = err
}

// reset forgets the failures (tests).
func (d *deviceErrors) reset() {
	d.mu.Lock()
	d.err = nil
	d.mu.Unlock()
}
