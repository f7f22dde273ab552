package native

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flextok-sdk/flextok/native/onnx"
	"google.golang.org/protobuf/proto"
)

// The tests run the ONNX Runtime library of $FLEXTOK_ORT_LIB or make setup's .deps/ort. Without
// it they skip, unless FLEXTOK_REQUIRE_ORT=1 (make test-go sets it); a CGO_ENABLED=0 build
// checks that everything returns ErrNoCgo instead.

// cgoBuild reports whether this is the cgo build (the no-cgo one returns ErrNoCgo everywhere).
func cgoBuild() bool {
	_, err := NewSession("", nil, nil, Options{})
	return !errors.Is(err, ErrNoCgo)
}

// ortLib is the library the tests load.
func ortLib() string {
	if p := os.Getenv("FLEXTOK_ORT_LIB"); p != "" {
		return p
	}
	p, _ := filepath.Abs(filepath.Join("..", ".deps", "ort", "libonnxruntime.so"))
	return p
}

// needORT loads the library (or skips) and returns CPU session options with one thread each.
func needORT(t testing.TB) Options {
	t.Helper()
	if !cgoBuild() {
		t.Skip("built without cgo")
	}
	lib := ortLib()
	if err := Init(Options{LibraryPath: lib}); err != nil {
		if os.Getenv("FLEXTOK_REQUIRE_ORT") == "1" {
			t.Fatalf("ONNX Runtime: %v", err)
		}
		t.Skipf("no ONNX Runtime library (make setup installs it): %v", err)
	}
	p := ProviderCPU
	if v := os.Getenv("FLEXTOK_TEST_PROVIDER"); v != "" { // cuda: the GPU check (docs/native.md)
		p = Provider(v)
	}
	return Options{LibraryPath: lib, Provider: p, IntraOpThreads: 1, InterOpThreads: 1}
}

func marshal(t testing.TB, g *onnx.Graph) []byte {
	t.Helper()
	b, err := proto.Marshal(g.Model("native test"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The small model: y = x Wᵀ + b ([batch, 3] → [batch, 2]), idx = argmax(y, axis 1) (int64), and
// ids2 = ids + ids for an int64 input.
var (
	smallW = []float32{1, 2, 3, -1, 0.5, 0.25}
	smallB = []float32{0.5, -2}
)

func smallModel(t testing.TB) []byte {
	g := onnx.NewGraph("small")
	x := g.Input("x", onnx.Float, "batch", 3)
	ids := g.Input("ids", onnx.Int64, "n")
	y := g.Linear(x, "fc", smallW, 2, 3, smallB)
	g.Output(y, "y", onnx.Float, "batch", 2)
	g.Output(g.Op("ArgMax", []onnx.Value{y}, onnx.AInt("axis", 1), onnx.AInt("keepdims", 0)), "idx", onnx.Int64, "batch")
	g.Output(g.Add(ids, ids), "ids2", onnx.Int64, "n")
	return marshal(t, g)
}

var (
	smallIn  = []string{"x", "ids"}
	smallOut = []string{"y", "idx", "ids2"}
)

// smallWant computes the small model in Go.
func smallWant(x []float32, ids []int64) (y []float32, idx, ids2 []int64) {
	for r := 0; r < len(x)/3; r++ {
		best := int64(0)
		for o := 0; o < 2; o++ {
			s := smallB[o]
			for i := 0; i < 3; i++ {
				s += x[3*r+i] * smallW[3*o+i]
			}
			y = append(y, s)
			if o > 0 && s > y[len(y)-2] {
				best = int64(o)
			}
		}
		idx = append(idx, best)
	}
	for _, v := range ids {
		ids2 = append(ids2, 2*v)
	}
	return
}

func smallSession(t testing.TB, o Options) *Session {
	t.Helper()
	s, err := NewSessionFromBytes(smallModel(t), smallIn, smallOut, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func checkSmall(t testing.TB, s *Session, x []float32, ids []int64) error {
	out, err := s.Run(context.Background(), []Tensor{
		{Shape: []int64{int64(len(x) / 3), 3}, F32: x},
		{Shape: []int64{int64(len(ids))}, I64: ids},
	})
	if err != nil {
		return err
	}
	y, idx, ids2 := smallWant(x, ids)
	if len(out) != 3 {
		return fmt.Errorf("%d outputs", len(out))
	}
	if got := fmt.Sprint(out[0].Shape, out[1].Shape, out[2].Shape); got != fmt.Sprint([]int64{int64(len(x) / 3), 2}, []int64{int64(len(x) / 3)}, []int64{int64(len(ids))}) {
		return fmt.Errorf("output shapes %s", got)
	}
	if out[0].I64 != nil || out[1].F32 != nil || out[2].F32 != nil {
		return fmt.Errorf("output element types: %+v", out)
	}
	for i := range y {
		if math.Abs(float64(out[0].F32[i]-y[i])) > 1e-5 {
			return fmt.Errorf("y = %v, want %v", out[0].F32, y)
		}
	}
	if fmt.Sprint(out[1].I64) != fmt.Sprint(idx) || fmt.Sprint(out[2].I64) != fmt.Sprint(ids2) {
		return fmt.Errorf("idx = %v, ids2 = %v; want %v, %v", out[1].I64, out[2].I64, idx, ids2)
	}
	return nil
}

func TestInitTwice(t *testing.T) {
	o := needORT(t)
	if err := Init(o); err != nil {
		t.Fatalf("second Init, same path: %v", err)
	}
	if err := Init(Options{}); err != nil {
		t.Fatalf("Init without a path once loaded: %v", err)
	}
	link := filepath.Join(t.TempDir(), "libonnxruntime.so")
	if err := os.Symlink(o.LibraryPath, link); err == nil {
		if err := Init(Options{LibraryPath: link}); err != nil {
			t.Errorf("Init through a symlink to the loaded library: %v", err)
		}
	}
	other := filepath.Join(t.TempDir(), "other", "libonnxruntime.so")
	err := Init(Options{LibraryPath: other})
	if err == nil || !strings.Contains(err.Error(), "already loaded") || !strings.Contains(err.Error(), other) {
		t.Errorf("Init with another path: %v", err)
	}
	if v, err := RuntimeVersion(); err != nil || v == "" {
		t.Errorf("RuntimeVersion = %q, %v", v, err)
	}
}

// TestInitFailures runs TestInitChild in a fresh process: Init on a missing file, a file that is
// not a shared library and a shared library that is not ONNX Runtime fails with ErrLibrary and
// leaves no state behind, so the real library then loads (through $FLEXTOK_ORT_LIB).
func TestInitFailures(t *testing.T) {
	o := needORT(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestInitChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "FLEXTOK_NATIVE_INIT_CHILD=1", "FLEXTOK_ORT_LIB="+o.LibraryPath)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestInitChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

func TestInitChild(t *testing.T) {
	if os.Getenv("FLEXTOK_NATIVE_INIT_CHILD") != "1" {
		t.Skip("run by TestInitFailures in a fresh process")
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing", "libonnxruntime.so")
	notLib := filepath.Join(dir, "libonnxruntime.so")
	if err := os.WriteFile(notLib, []byte("not a shared library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{missing, "no such file"},
		{notLib, "cannot load"},
		{dir, "directory"},
		{"libm.so.6", "not an ONNX Runtime library"},
		{"libflextok-no-such-library.so", "search path"},
	} {
		err := Init(Options{LibraryPath: c.path})
		if !errors.Is(err, ErrLibrary) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Init(%s) = %v; want ErrLibrary mentioning %q", c.path, err, c.want)
		}
		t.Logf("Init(%s): %v", c.path, err)
	}
	if _, err := NewSessionFromBytes([]byte{1}, []string{"x"}, []string{"y"}, Options{LibraryPath: missing}); !errors.Is(err, ErrLibrary) {
		t.Errorf("NewSessionFromBytes with a missing library: %v", err)
	}
	// Nothing is loaded yet: RuntimeVersion loads $FLEXTOK_ORT_LIB.
	v, err := RuntimeVersion()
	if err != nil || v == "" {
		t.Fatalf("RuntimeVersion after the failures: %q, %v", v, err)
	}
	if err := Init(Options{LibraryPath: os.Getenv("FLEXTOK_ORT_LIB")}); err != nil {
		t.Fatal(err)
	}
	if err := Init(Options{LibraryPath: missing}); err == nil || errors.Is(err, ErrLibrary) {
		t.Errorf("Init(other path) once loaded = %v; want the already-loaded error", err)
	}
}

func TestRunSmallModel(t *testing.T) {
	o := needORT(t)
	s := smallSession(t, o)
	if s.Provider() != ProviderCPU {
		t.Errorf("Provider() = %q", s.Provider())
	}
	if fmt.Sprint(s.Inputs(), s.Outputs()) != fmt.Sprint(smallIn, smallOut) {
		t.Errorf("names %v %v", s.Inputs(), s.Outputs())
	}
	if err := checkSmall(t, s, []float32{1, 2, 3, -1, 4, 0.5}, []int64{7, -3, 1 << 40}); err != nil {
		t.Fatal(err)
	}
	// Zero-length dimensions pass through.
	out, err := s.Run(context.Background(), []Tensor{{Shape: []int64{0, 3}, F32: []float32{}}, {Shape: []int64{0}, I64: []int64{}}})
	if err != nil || fmt.Sprint(out[0].Shape, out[1].Shape, len(out[0].F32)) != "[0 2] [0] 0" {
		t.Errorf("empty batch: %v, %v", out, err)
	}
}

func TestRunFromFile(t *testing.T) {
	o := needORT(t)
	path := filepath.Join(t.TempDir(), "small.onnx")
	if err := os.WriteFile(path, smallModel(t), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(path, smallIn, smallOut, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := checkSmall(t, s, []float32{0, 0, 1}, []int64{2}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSession(filepath.Join(t.TempDir(), "none.onnx"), smallIn, smallOut, o); err == nil {
		t.Error("NewSession on a missing file: no error")
	}
}

func TestScalarInput(t *testing.T) {
	o := needORT(t)
	g := onnx.NewGraph("scalar")
	x := g.Input("x", onnx.Float, 2)
	s := g.Input("s", onnx.Float)
	g.Output(g.Mul(x, s), "y", onnx.Float, 2)
	sess, err := NewSessionFromBytes(marshal(t, g), []string{"x", "s"}, []string{"y"}, o)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Run(context.Background(), []Tensor{{Shape: []int64{2}, F32: []float32{1.5, -2}}, {F32: []float32{3}}})
	if err != nil || fmt.Sprint(out[0].F32) != "[4.5 -6]" {
		t.Errorf("scalar input: %v, %v", out, err)
	}
}

func TestRunErrors(t *testing.T) {
	o := needORT(t)
	s := smallSession(t, o)
	ctx := context.Background()
	x := Tensor{Shape: []int64{1, 3}, F32: []float32{1, 2, 3}}
	ids := Tensor{Shape: []int64{1}, I64: []int64{1}}
	for _, c := range []struct {
		name string
		in   []Tensor
		want string
	}{
		{"no inputs", nil, "got 0 inputs"},
		{"too many", []Tensor{x, ids, ids}, "got 3 inputs"},
		{"short data", []Tensor{{Shape: []int64{2, 3}, F32: []float32{1, 2, 3}}, ids}, `"x": shape [2 3] holds 6 elements, data has 3`},
		{"long data", []Tensor{x, {Shape: []int64{1}, I64: []int64{1, 2}}}, `"ids"`},
		{"no data", []Tensor{{Shape: []int64{1, 3}}, ids}, "exactly one of F32 and I64"},
		{"both", []Tensor{{Shape: []int64{1, 3}, F32: []float32{1, 2, 3}, I64: []int64{1, 2, 3}}, ids}, "exactly one"},
		{"negative dim", []Tensor{{Shape: []int64{-1, 3}, F32: []float32{}}, ids}, "negative"},
		{"wrong type", []Tensor{{Shape: []int64{1, 3}, I64: []int64{1, 2, 3}}, ids}, "run:"},
		{"wrong rank", []Tensor{{Shape: []int64{3}, F32: []float32{1, 2, 3}}, ids}, "run:"},
		{"wrong width", []Tensor{{Shape: []int64{3, 1}, F32: []float32{1, 2, 3}}, ids}, "run:"},
	} {
		_, err := s.Run(ctx, c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error with %q", c.name, err, c.want)
		}
	}
	// The session still works after the failures.
	if err := checkSmall(t, s, []float32{1, 1, 1}, []int64{5}); err != nil {
		t.Fatal(err)
	}
}

func TestSessionErrors(t *testing.T) {
	o := needORT(t)
	m := smallModel(t)
	for _, c := range []struct {
		name      string
		model     []byte
		in, out   []string
		o         Options
		wantInNew bool
	}{
		{"empty model", nil, smallIn, smallOut, o, true},
		{"garbage model", []byte("not a model"), smallIn, smallOut, o, true},
		{"no inputs", m, nil, smallOut, o, true},
		{"duplicate output", m, smallIn, []string{"y", "y"}, o, true},
		{"bad provider", m, smallIn, smallOut, Options{LibraryPath: o.LibraryPath, Provider: "tpu"}, true},
		{"negative threads", m, smallIn, smallOut, Options{LibraryPath: o.LibraryPath, Provider: ProviderCPU, IntraOpThreads: -1}, true},
		{"unknown output", m, smallIn, []string{"y", "nope"}, o, false},
	} {
		s, err := NewSessionFromBytes(c.model, c.in, c.out, c.o)
		if c.wantInNew {
			if err == nil {
				s.Close()
				t.Errorf("%s: no error", c.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: NewSessionFromBytes: %v", c.name, err)
			continue
		}
		_, err = s.Run(context.Background(), []Tensor{{Shape: []int64{1, 3}, F32: []float32{1, 2, 3}}, {Shape: []int64{1}, I64: []int64{1}}})
		if err == nil || !strings.Contains(err.Error(), "nope") {
			t.Errorf("%s: Run: %v", c.name, err)
		}
		s.Close()
	}
}

func TestClose(t *testing.T) {
	o := needORT(t)
	s := smallSession(t, o)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := s.Run(context.Background(), []Tensor{{Shape: []int64{1, 3}, F32: []float32{1, 2, 3}}, {Shape: []int64{1}, I64: []int64{1}}})
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	o := needORT(t)
	s := smallSession(t, o)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				rows := 1 + (w+i)%4
				x := make([]float32, 3*rows)
				for j := range x {
					x[j] = float32(w*100+i) + float32(j)*0.25 - float32(j%3)*3
				}
				if err := checkSmall(t, s, x, []int64{int64(w), int64(i)}); err != nil {
					errs <- fmt.Errorf("goroutine %d run %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// slowSession is a chain of many 256×256 MatMuls: seconds of work on one thread.
func slowSession(t testing.TB, o Options) *Session {
	const n, layers = 256, 3000
	g := onnx.NewGraph("slow")
	x := g.Input("x", onnx.Float, n, n)
	w := make([]float32, n*n)
	for i := range n {
		w[i*n+i] = 1
	}
	wv := g.Const("w", []int{n, n}, w)
	y := x
	for range layers {
		y = g.Op("MatMul", []onnx.Value{y, wv})
	}
	g.Output(y, "y", onnx.Float, n, n)
	s, err := NewSessionFromBytes(marshal(t, g), []string{"x"}, []string{"y"}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCancel(t *testing.T) {
	o := needORT(t)
	s := slowSession(t, o)
	in := []Tensor{{Shape: []int64{256, 256}, F32: make([]float32, 256*256)}}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Run(ctx, in); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := s.Run(ctx, in)
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run cancelled after 100ms: %v (after %v)", err, took)
	}
	if took > 3*time.Second {
		t.Errorf("cancellation took %v", took)
	}
	t.Logf("cancelled run returned after %v", took)

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Run(ctx, in); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run past its deadline: %v", err)
	}
}

func TestProviders(t *testing.T) {
	o := needORT(t)
	m := smallModel(t)

	cuda := o
	cuda.Provider = ProviderCUDA
	s, err := NewSessionFromBytes(m, smallIn, smallOut, cuda)
	if err == nil {
		// A CUDA build on a machine with a GPU.
		defer s.Close()
		if s.Provider() != ProviderCUDA {
			t.Errorf("cuda session: Provider() = %q", s.Provider())
		}
		if err := checkSmall(t, s, []float32{1, 2, 3}, []int64{1}); err != nil {
			t.Error(err)
		}
		t.Skip("CUDA is available here; the fallback is not exercised")
	}
	if !strings.Contains(err.Error(), "provider cuda") || !strings.Contains(strings.ToLower(err.Error()), "cuda") {
		t.Errorf("cuda on a CPU-only library: %v", err)
	}
	if _, serr := os.Stat(filepath.Join(filepath.Dir(o.LibraryPath), "libonnxruntime_providers_cuda.so")); serr != nil &&
		!strings.Contains(err.Error(), "CPU-only ONNX Runtime build") {
		t.Errorf("cuda error without the CPU-only hint: %v", err)
	}
	t.Logf("cuda: %v", err)

	var mu sync.Mutex
	var logs []string
	auto := o
	auto.Provider = ""
	auto.Logf = func(format string, args ...any) {
		mu.Lock()
		logs = append(logs, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	providerNotes.reset()
	cudaDown.reset()
	for i := 0; i < 3; i++ {
		s, err := NewSessionFromBytes(m, smallIn, smallOut, auto)
		if err != nil {
			t.Fatalf("auto: %v", err)
		}
		if s.Provider() != ProviderCPU {
			t.Errorf("auto: Provider() = %q", s.Provider())
		}
		if err := checkSmall(t, s, []float32{1, 2, 3}, []int64{1}); err != nil {
			t.Error(err)
		}
		s.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logs) != 1 || !strings.Contains(logs[0], "CUDA not used") {
		t.Errorf("auto logged %q; want one line saying why CUDA is not used", logs)
	}
	t.Logf("auto: %s", logs)
}

func TestNoCgo(t *testing.T) {
	if cgoBuild() {
		t.Skip("cgo build")
	}
	if err := Init(Options{}); !errors.Is(err, ErrNoCgo) {
		t.Errorf("Init: %v", err)
	}
	if _, err := RuntimeVersion(); !errors.Is(err, ErrNoCgo) {
		t.Errorf("RuntimeVersion: %v", err)
	}
	if _, err := NewSessionFromBytes([]byte{1}, []string{"x"}, []string{"y"}, Options{}); !errors.Is(err, ErrNoCgo) {
		t.Errorf("NewSessionFromBytes: %v", err)
	}
	var s Session
	if _, err := s.Run(context.Background(), nil); !errors.Is(err, ErrNoCgo) {
		t.Errorf("Run: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
