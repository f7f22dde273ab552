//go:build cgo

package native

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// The two entries of ONNX Runtime's OrtApiBase (onnxruntime_c_api.h); ORT_API_CALL is empty
// outside Windows.
typedef struct {
	const void *(*GetApi)(uint32_t version);
	const char *(*GetVersionString)(void);
} flextok_api_base;
typedef const flextok_api_base *(*flextok_get_api_base)(void);

// flextok_probe opens the library at path and copies its version string into version. It
// returns 0 (and leaves the library open) when the library provides C API version api;
// otherwise it closes the library and returns 1 (dlopen failed), 2 (no OrtGetApiBase), 3 (no
// API base) or 4 (the version is read but the C API version is not provided). err receives
// dlerror's text.
static int flextok_probe(const char *path, uint32_t api, char *version, size_t vn, char *err, size_t en) {
	version[0] = 0;
	err[0] = 0;
	void *h = dlopen(path, RTLD_LAZY);
	if (h == NULL) {
		const char *e = dlerror();
		if (e != NULL) { strncpy(err, e, en - 1); err[en - 1] = 0; }
		return 1;
	}
	void *f = dlsym(h, "OrtGetApiBase");
	if (f == NULL) {
		const char *e = dlerror();
		if (e != NULL) { strncpy(err, e, en - 1); err[en - 1] = 0; }
		dlclose(h);
		return 2;
	}
	const flextok_api_base *base = ((flextok_get_api_base)f)();
	if (base == NULL || base->GetVersionString == NULL || base->GetApi == NULL) {
		dlclose(h);
		return 3;
	}
	const char *v = base->GetVersionString();
	if (v != NULL) { strncpy(version, v, vn - 1); version[vn - 1] = 0; }
	if (base->GetApi(api) == NULL) {
		dlclose(h);
		return 4;
	}
	return 0;
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

// The process's one ONNX Runtime library (the binding keeps one environment per process).
var lib struct {
	mu      sync.Mutex
	loaded  bool
	path    string // resolved path; "" when the environment was initialised outside this package
	version string
}

// Init loads the ONNX Runtime shared library (Options.LibraryPath, else $FLEXTOK_ORT_LIB, else
// the loader's search path) and creates the process's ONNX Runtime environment. It succeeds
// once per process; later calls return nil when they name the same library (or none) and an
// error when they name another. A failed Init (missing file, not a shared library, too old)
// changes nothing, so a later call may name another library. Only LibraryPath is read.
func Init(o Options) error {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.loaded {
		if o.LibraryPath == "" || lib.path == "" {
			return nil
		}
		if p := libraryPath(o.LibraryPath); !samePath(p, lib.path) {
			return fmt.Errorf("flextok/native: ONNX Runtime %s is already loaded from %s; cannot load %s in the same process",
				lib.version, lib.path, p)
		}
		return nil
	}
	if ort.IsInitialized() {
		// Another package of this process initialised the binding: adopt its library.
		v := ort.GetVersion()
		if err := checkVersion("the loaded library", v); err != nil {
			return err
		}
		lib.loaded, lib.path, lib.version = true, "", v
		return nil
	}
	path := libraryPath(o.LibraryPath)
	v, err := probe(path)
	if err != nil {
		return err
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrLibrary, path, err)
	}
	lib.loaded, lib.path, lib.version = true, path, v
	return nil
}

// RuntimeVersion returns the loaded ONNX Runtime library's version (e.g. "1.24.3"), loading
// the default library (Init with zero Options) if none is loaded yet.
func RuntimeVersion() (string, error) {
	lib.mu.Lock()
	v, ok := lib.version, lib.loaded
	lib.mu.Unlock()
	if ok {
		return v, nil
	}
	if err := Init(Options{}); err != nil {
		return "", err
	}
	lib.mu.Lock()
	defer lib.mu.Unlock()
	return lib.version, nil
}

// probe checks that path is an ONNX Runtime library of at least MinVersion, without touching
// the binding's state, and returns its version.
func probe(path string) (string, error) {
	if filepath.IsAbs(path) {
		st, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v (run make setup, or set FLEXTOK_ORT_LIB or Options.LibraryPath)",
				ErrLibrary, path, errors.Unwrap(err))
		}
		if st.IsDir() {
			return "", fmt.Errorf("%w: %s is a directory, not the shared library", ErrLibrary, path)
		}
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var version, msg [256]C.char
	rc := C.flextok_probe(cpath, C.uint32_t(MinAPIVersion), &version[0], C.size_t(len(version)), &msg[0], C.size_t(len(msg)))
	v := C.GoString(&version[0])
	switch rc {
	case 0:
	case 1:
		hint := ""
		if !filepath.IsAbs(path) {
			hint = " (not on the loader's search path: run make setup, or set FLEXTOK_ORT_LIB or Options.LibraryPath)"
		}
		return "", fmt.Errorf("%w: cannot load %s: %s%s", ErrLibrary, path, C.GoString(&msg[0]), hint)
	case 2, 3:
		return "", fmt.Errorf("%w: %s is not an ONNX Runtime library (no OrtGetApiBase)", ErrLibrary, path)
	default:
		if err := checkVersion(path, v); err != nil {
			return "", err
		}
		return "", fmt.Errorf("%w: %s (ONNX Runtime %s) does not provide C API version %d", ErrLibrary, path, v, MinAPIVersion)
	}
	if err := checkVersion(path, v); err != nil {
		return "", err
	}
	return v, nil
}

// checkVersion returns an ErrLibrary error when version v of the library at what is older
// than MinVersion.
func checkVersion(what, v string) error {
	ok, err := versionAtLeast(v, MinVersion)
	if err != nil {
		return fmt.Errorf("%w: %s reports an unreadable version: %v", ErrLibrary, what, err)
	}
	if !ok {
		return fmt.Errorf("%w: %s is ONNX Runtime %s; github.com/yalue/onnxruntime_go needs %s or newer (C API %d)",
			ErrLibrary, what, v, MinVersion, MinAPIVersion)
	}
	return nil
}

// Session is one ONNX Runtime inference session with fixed input and output names. Run is
// safe for concurrent use; Close waits for the runs in progress.
type Session struct {
	mu       sync.RWMutex
	s        *ort.DynamicAdvancedSession // nil once closed
	provider Provider
	inputs   []string
	outputs  []string
}

// NewSession loads the model file at modelPath. Use it (not NewSessionFromBytes) for models
// whose weights are in external data files: ONNX Runtime finds them relative to the model's
// directory. inputs and outputs name the graph inputs Run takes and the outputs it returns, in
// that order. Init(o) runs first.
func NewSession(modelPath string, inputs, outputs []string, o Options) (*Session, error) {
	if modelPath == "" {
		return nil, errors.New("flextok/native: empty model path")
	}
	if _, err := os.Stat(modelPath); err != nil {
		return nil, fmt.Errorf("flextok/native: model: %w", err)
	}
	return newSession(modelPath, nil, inputs, outputs, o)
}

// NewSessionFromBytes is NewSession for a serialised ModelProto in memory (no external data).
func NewSessionFromBytes(model []byte, inputs, outputs []string, o Options) (*Session, error) {
	if len(model) == 0 {
		return nil, errors.New("flextok/native: empty model")
	}
	return newSession("", model, inputs, outputs, o)
}

func newSession(path string, model []byte, inputs, outputs []string, o Options) (*Session, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := checkNames("input", inputs); err != nil {
		return nil, err
	}
	if err := checkNames("output", outputs); err != nil {
		return nil, err
	}
	if err := Init(o); err != nil {
		return nil, err
	}
	what := path
	if what == "" {
		what = fmt.Sprintf("model (%d bytes)", len(model))
	}
	create := func(cuda bool) (*ort.DynamicAdvancedSession, error) {
		so, err := sessionOptions(o, cuda)
		if err != nil {
			return nil, err
		}
		defer so.Destroy()
		var s *ort.DynamicAdvancedSession
		if path != "" {
			s, err = ort.NewDynamicAdvancedSession(path, inputs, outputs, so)
		} else {
			s, err = ort.NewDynamicAdvancedSessionWithONNXData(model, inputs, outputs, so)
		}
		if err != nil {
			return nil, fmt.Errorf("creating the session for %s: %w", what, err)
		}
		return s, nil
	}
	p, _ := o.provider()
	var (
		s   *ort.DynamicAdvancedSession
		err error
	)
	switch p {
	case ProviderCPU:
		s, err = create(false)
		if err != nil {
			return nil, fmt.Errorf("flextok/native: %w", err)
		}
	case ProviderCUDA:
		s, err = create(true)
		if err != nil {
			return nil, fmt.Errorf("flextok/native: provider cuda: %w", err)
		}
	default:
		cerr := cudaDown.get(o.CUDADevice)
		if dir, cpuOnly := cpuOnlyBuild(); cerr == nil && cpuOnly {
			// Nothing to try: say so in one line instead of passing on ONNX Runtime's
			// library-loading error.
			cerr = fmt.Errorf("%s holds a CPU-only ONNX Runtime build (no libonnxruntime_providers_cuda.so; scripts/setup-ort-gpu.sh installs a CUDA build)", dir)
			cudaDown.set(o.CUDADevice, cerr)
		}
		if cerr == nil {
			s, cerr = create(true)
			if cerr == nil {
				p = ProviderCUDA
				break
			}
			var pe *providerError
			if errors.As(cerr, &pe) {
				cudaDown.set(o.CUDADevice, cerr)
			}
		}
		s, err = create(false)
		if err != nil {
			return nil, fmt.Errorf("flextok/native: provider auto: cpu: %w (cuda: %v)", err, cerr)
		}
		p = ProviderCPU
		providerNotes.printf(o, "flextok/native: provider auto: CUDA not used, running on the CPU: %v", cerr)
	}
	if p == ProviderCUDA {
		providerNotes.printf(o, "flextok/native: using the CUDA execution provider (device %d)", o.CUDADevice)
	}
	return &Session{
		s:        s,
		provider: p,
		inputs:   append([]string(nil), inputs...),
		outputs:  append([]string(nil), outputs...),
	}, nil
}

// sessionOptions builds the ORT session options of o: graph optimisation level all, the
// thread counts, and, with cuda, the CUDA execution provider.
func sessionOptions(o Options, cuda bool) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	fail := func(what string, err error) (*ort.SessionOptions, error) {
		so.Destroy()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll); err != nil {
		return fail("graph optimisation level", err)
	}
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return fail("intra-op threads", err)
		}
	}
	if o.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
			return fail("inter-op threads", err)
		}
	}
	if cuda {
		if err := appendCUDA(so, o); err != nil {
			so.Destroy()
			return nil, &providerError{fmt.Errorf("the CUDA execution provider: %w", err)}
		}
	}
	return so, nil
}

// providerError is a failure to configure the CUDA provider (its libraries, the driver, the
// device), as opposed to one of the session itself.
type providerError struct{ err error }

func (e *providerError) Error() string { return e.err.Error() }
func (e *providerError) Unwrap() error { return e.err }

func appendCUDA(so *ort.SessionOptions, o Options) error {
	err := func() error {
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer co.Destroy()
		// use_tf32=0: float32 products stay float32 (TF32 keeps 10 mantissa bits); Options.FP16
		// is the way to tensor-core speed, with its precision measured.
		settings := map[string]string{"device_id": strconv.Itoa(o.CUDADevice), "use_tf32": "0"}
		if o.CUDAMemLimit > 0 {
			settings["gpu_mem_limit"] = strconv.FormatInt(o.CUDAMemLimit, 10)
		}
		if err := co.Update(settings); err != nil {
			return fmt.Errorf("provider options %v: %w", settings, err)
		}
		return so.AppendExecutionProviderCUDA(co)
	}()
	if err != nil {
		return fmt.Errorf("%w%s", err, cudaHint(err))
	}
	return nil
}

// cudaHint explains a CUDA failure err: the loaded library has no CUDA provider next to it, or
// the provider's own libraries are not found.
// cpuOnlyBuild reports whether the loaded library's directory lacks the CUDA provider library
// (a CPU-only build such as make setup's), and the directory; false when it cannot tell.
func cpuOnlyBuild() (string, bool) {
	lib.mu.Lock()
	path := lib.path
	lib.mu.Unlock()
	if path == "" || !filepath.IsAbs(path) {
		return "", false
	}
	dir := filepath.Dir(path)
	_, err := os.Stat(filepath.Join(dir, "libonnxruntime_providers_cuda.so"))
	return dir, err != nil
}

func cudaHint(err error) string {
	lib.mu.Lock()
	path := lib.path
	lib.mu.Unlock()
	if path == "" || !filepath.IsAbs(path) {
		return ""
	}
	dir := filepath.Dir(path)
	if _, serr := os.Stat(filepath.Join(dir, "libonnxruntime_providers_cuda.so")); serr != nil {
		return fmt.Sprintf(" (no libonnxruntime_providers_cuda.so in %s: a CPU-only ONNX Runtime build; "+
			"scripts/setup-ort-gpu.sh installs a CUDA build)", dir)
	}
	if strings.Contains(err.Error(), "cannot open shared object file") {
		return " (the CUDA provider needs the CUDA 12 and cuDNN 9 libraries on the loader's path: " +
			"scripts/setup-ort-gpu.sh --cuda-libs installs them and prints the LD_LIBRARY_PATH)"
	}
	return ""
}

// Provider returns the execution provider the session uses: ProviderCUDA or ProviderCPU.
func (s *Session) Provider() Provider { return s.provider }

// Inputs returns the input names Run takes, in order.
func (s *Session) Inputs() []string { return append([]string(nil), s.inputs...) }

// Outputs returns the output names Run returns, in order.
func (s *Session) Outputs() []string { return append([]string(nil), s.outputs...) }

// Close releases the session; it waits for the runs in progress. Closing twice is a no-op.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s == nil {
		return nil
	}
	err := s.s.Destroy()
	s.s = nil
	return err
}

// Run runs the session on in (one tensor per input name, in order) and returns one tensor per
// output name. The input data is read in place (not copied) and must not change during the
// run; the outputs are fresh Go slices. When ctx is cancelled during the run, ONNX Runtime is
// told to stop (it checks between nodes) and Run returns ctx.Err().
func (s *Session) Run(ctx context.Context, in []Tensor) ([]Tensor, error) {
	if len(in) != len(s.inputs) {
		return nil, fmt.Errorf("flextok/native: Run got %d inputs; the session takes %d %q", len(in), len(s.inputs), s.inputs)
	}
	for i, t := range in {
		if err := t.check(s.inputs[i]); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.s == nil {
		return nil, ErrClosed
	}

	vals := make([]ort.Value, len(in))
	outs := make([]ort.Value, len(s.outputs))
	defer func() {
		for _, v := range vals {
			if v != nil {
				v.Destroy()
			}
		}
		for _, v := range outs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, t := range in {
		v, err := newValue(t)
		if err != nil {
			return nil, fmt.Errorf("flextok/native: input %q: %w", s.inputs[i], err)
		}
		vals[i] = v
	}
	ro, err := ort.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("flextok/native: run options: %w", err)
	}
	defer ro.Destroy()
	if done := ctx.Done(); done != nil {
		stop := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			select {
			case <-done:
				ro.Terminate()
			case <-stop:
			}
		}()
		defer func() { close(stop); <-watched }() // before ro.Destroy
	}
	if err := s.s.RunWithOptions(vals, outs, ro); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("flextok/native: run: %w", err)
	}
	res := make([]Tensor, len(outs))
	for i, v := range outs {
		switch t := v.(type) {
		case *ort.Tensor[float32]:
			// GetData is a Go slice the binding copied the output into; it outlives Destroy.
			res[i] = Tensor{Shape: []int64(t.GetShape().Clone()), F32: t.GetData()}
		case *ort.Tensor[int64]:
			res[i] = Tensor{Shape: []int64(t.GetShape().Clone()), I64: t.GetData()}
		default:
			return nil, fmt.Errorf("flextok/native: output %q: %s; Run returns float32 and int64 tensors only",
				s.outputs[i], describe(v))
		}
	}
	return res, nil
}

// newValue wraps t's data (not copied) in an ORT value.
func newValue(t Tensor) (ort.Value, error) {
	if len(t.Shape) == 0 {
		if t.F32 != nil {
			return ort.NewScalar(t.F32[0])
		}
		return ort.NewScalar(t.I64[0])
	}
	shape := ort.NewShape(t.Shape...)
	if t.F32 != nil {
		return ort.NewTensor(shape, t.F32)
	}
	return ort.NewTensor(shape, t.I64)
}

func describe(v ort.Value) string {
	if v.GetONNXType() != ort.ONNXTypeTensor {
		return fmt.Sprintf("an ONNX %s", v.GetONNXType())
	}
	return fmt.Sprintf("a %s tensor", ort.TensorElementDataType(v.DataType()))
}
