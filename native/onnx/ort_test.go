//go:build cgo

package onnx

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"
)

// The exporter's tests run the graphs in ONNX Runtime directly (package native wraps it for
// users and has its own tests). The library comes from $FLEXTOK_ORT_LIB or make setup's
// .deps/ort; without it the tests skip, unless FLEXTOK_REQUIRE_ORT=1 (make test sets it).

var (
	ortOnce sync.Once
	ortErr  error
)

func needORT(t testing.TB) {
	t.Helper()
	ortOnce.Do(func() {
		lib := os.Getenv("FLEXTOK_ORT_LIB")
		if lib == "" {
			lib, _ = filepath.Abs("../../.deps/ort/libonnxruntime.so")
		}
		if _, err := os.Stat(lib); err != nil {
			ortErr = err
			return
		}
		ort.SetSharedLibraryPath(lib)
		ortErr = ort.InitializeEnvironment()
	})
	if ortErr != nil {
		if os.Getenv("FLEXTOK_REQUIRE_ORT") == "1" {
			t.Fatalf("ONNX Runtime: %v", ortErr)
		}
		t.Skipf("no ONNX Runtime library (make setup installs it): %v", ortErr)
	}
}

// input is one named graph input.
type input struct {
	name  string
	shape []int64
	f32   []float32
	i64   []int64
}

// runGraph runs m on the CPU provider and returns each named output's data as float32
// (int64 outputs converted) and shape.
func runGraph(t testing.TB, m *pb.ModelProto, in []input, outputs ...string) ([][]float32, [][]int64) {
	t.Helper()
	needORT(t)
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(in))
	vals := make([]ort.Value, len(in))
	for i, x := range in {
		names[i] = x.name
		var v ort.Value
		if x.i64 != nil {
			v, err = ort.NewTensor(ort.NewShape(x.shape...), x.i64)
		} else {
			v, err = ort.NewTensor(ort.NewShape(x.shape...), x.f32)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer v.Destroy()
		vals[i] = v
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, names, outputs, nil)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer s.Destroy()
	outs := make([]ort.Value, len(outputs))
	if err := s.Run(vals, outs); err != nil {
		t.Fatalf("run: %v", err)
	}
	res := make([][]float32, len(outs))
	shapes := make([][]int64, len(outs))
	for i, o := range outs {
		defer o.Destroy()
		shapes[i] = o.GetShape()
		switch o := o.(type) {
		case *ort.Tensor[float32]:
			res[i] = append([]float32(nil), o.GetData()...)
		case *ort.Tensor[int64]:
			for _, x := range o.GetData() {
				res[i] = append(res[i], float32(x))
			}
		default:
			t.Fatalf("output %s: type %T", outputs[i], o)
		}
	}
	return res, shapes
}
