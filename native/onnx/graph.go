package onnx

import (
	"encoding/binary"
	"fmt"
	"math"

	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Opset is the ONNX operator set every exported graph imports (default domain). 17 is the
// first with LayerNormalization, and ONNX Runtime 1.14 and newer run it on every provider.
const Opset = 17

// IRVersion is the ONNX IR version written into the models (the one that goes with opset 17).
const IRVersion = 8

// Value names a tensor of the graph under construction.
type Value string

// Dim is one dimension of a graph input or output: an int (fixed) or a string (symbolic,
// e.g. "batch").
type Dim any

// Element types used by the graphs.
const (
	Float   = pb.TensorProto_FLOAT
	Float16 = pb.TensorProto_FLOAT16
	Int64   = pb.TensorProto_INT64
	Bool    = pb.TensorProto_BOOL
)

// Graph builds one ONNX graph: nodes in topological order (each Op appends a node whose inputs
// already exist), initializers for the weights, and the typed inputs and outputs.
type Graph struct {
	// FP16 makes Linear store its weight in float16 and multiply in float16 (mixed
	// precision for GPUs: half the weight memory, tensor-core products). Norms, softmax,
	// attention products, residuals and biases stay float32.
	FP16 bool

	g      *pb.GraphProto
	seq    int
	scope  string
	names  map[string]bool
	consts map[string]Value // Scalar and Ints constants by value, each added once
}

// NewGraph starts an empty graph.
func NewGraph(name string) *Graph {
	return &Graph{g: &pb.GraphProto{Name: ptr(name)}, names: map[string]bool{}, consts: map[string]Value{}}
}

func ptr[T any](v T) *T { return &v }

// Scope sets a name prefix (for readable node and weight names, e.g. "decoder.block3") and
// returns a function that restores the previous one.
func (g *Graph) Scope(s string) func() {
	old := g.scope
	if old != "" {
		s = old + "." + s
	}
	g.scope = s
	return func() { g.scope = old }
}

// fresh returns a new unique name with the given hint under the current scope.
func (g *Graph) fresh(hint string) string {
	g.seq++
	name := fmt.Sprintf("%s_%d", hint, g.seq)
	if g.scope != "" {
		name = g.scope + "." + name
	}
	return name
}

func valueInfo(name string, t pb.TensorProto_DataType, dims []Dim) *pb.ValueInfoProto {
	shape := &pb.TensorShapeProto{}
	for _, d := range dims {
		switch d := d.(type) {
		case int:
			shape.Dim = append(shape.Dim, &pb.TensorShapeProto_Dimension{Value: &pb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
		case string:
			shape.Dim = append(shape.Dim, &pb.TensorShapeProto_Dimension{Value: &pb.TensorShapeProto_Dimension_DimParam{DimParam: d}})
		default:
			panic(fmt.Sprintf("onnx: dimension %v (%T): want int or string", d, d))
		}
	}
	return &pb.ValueInfoProto{
		Name: ptr(name),
		Type: &pb.TypeProto{Value: &pb.TypeProto_TensorType{TensorType: &pb.TypeProto_Tensor{
			ElemType: ptr(int32(t)),
			Shape:    shape,
		}}},
	}
}

// Input declares a graph input.
func (g *Graph) Input(name string, t pb.TensorProto_DataType, dims ...Dim) Value {
	g.claim(name)
	g.g.Input = append(g.g.Input, valueInfo(name, t, dims))
	return Value(name)
}

// Output declares v as the graph output name (through an Identity node when v has another name).
func (g *Graph) Output(v Value, name string, t pb.TensorProto_DataType, dims ...Dim) {
	if string(v) != name {
		g.claim(name)
		g.node("Identity", []Value{v}, []string{name})
	}
	g.g.Output = append(g.g.Output, valueInfo(name, t, dims))
}

func (g *Graph) claim(name string) {
	if g.names[name] {
		panic("onnx: duplicate tensor name " + name)
	}
	g.names[name] = true
}

// Const adds a float32 initializer of the given shape (a weight); name is scoped.
func (g *Graph) Const(name string, shape []int, data []float32) Value {
	checkLen(name, shape, len(data))
	return g.init(g.scoped(name), Float, shape, tensor.Bytes(data))
}

// ConstInt64 adds an int64 initializer.
func (g *Graph) ConstInt64(name string, shape []int, data []int64) Value {
	checkLen(name, shape, len(data))
	raw := make([]byte, 8*len(data))
	for i, x := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
	}
	return g.init(g.scoped(name), Int64, shape, raw)
}

// Scalar returns a float32 scalar constant (one initializer per distinct value).
func (g *Graph) Scalar(v float32) Value {
	return g.constant(Float, nil, binary.LittleEndian.AppendUint32(nil, math.Float32bits(v)))
}

// Ints returns a 1-D int64 constant (shapes, axes, indices; one initializer per distinct list).
func (g *Graph) Ints(v ...int64) Value {
	raw := make([]byte, 0, 8*len(v))
	for _, x := range v {
		raw = binary.LittleEndian.AppendUint64(raw, uint64(x))
	}
	return g.constant(Int64, []int{len(v)}, raw)
}

// constant adds an unnamed constant once per type, shape and bytes, outside any scope.
func (g *Graph) constant(t pb.TensorProto_DataType, shape []int, raw []byte) Value {
	key := fmt.Sprint(t, shape, string(raw))
	if v, ok := g.consts[key]; ok {
		return v
	}
	g.seq++
	v := g.init(fmt.Sprintf("const_%d", g.seq), t, shape, raw)
	g.consts[key] = v
	return v
}

func checkLen(name string, shape []int, n int) {
	size := 1
	for _, s := range shape {
		size *= s
	}
	if size != n {
		panic(fmt.Sprintf("onnx: initializer %s: shape %v holds %d values, got %d", name, shape, size, n))
	}
}

// scoped prefixes name with the current scope.
func (g *Graph) scoped(name string) string {
	if g.scope == "" {
		return name
	}
	return g.scope + "." + name
}

// init adds an initializer with a full (already scoped) name.
func (g *Graph) init(name string, t pb.TensorProto_DataType, shape []int, raw []byte) Value {
	g.claim(name)
	dims := make([]int64, len(shape))
	for i, s := range shape {
		dims[i] = int64(s)
	}
	g.g.Initializer = append(g.g.Initializer, &pb.TensorProto{Name: ptr(name), DataType: ptr(int32(t)), Dims: dims, RawData: raw})
	return Value(name)
}

// Attr is a node attribute.
type Attr = *pb.AttributeProto

// AInt is an int attribute.
func AInt(name string, v int64) Attr {
	return &pb.AttributeProto{Name: ptr(name), Type: ptr(pb.AttributeProto_INT), I: ptr(v)}
}

// AInts is an ints attribute.
func AInts(name string, v ...int64) Attr {
	return &pb.AttributeProto{Name: ptr(name), Type: ptr(pb.AttributeProto_INTS), Ints: v}
}

// AFloat is a float attribute.
func AFloat(name string, v float32) Attr {
	return &pb.AttributeProto{Name: ptr(name), Type: ptr(pb.AttributeProto_FLOAT), F: ptr(v)}
}

func (g *Graph) node(op string, in []Value, out []string, attrs ...Attr) {
	n := &pb.NodeProto{OpType: ptr(op), Name: ptr(g.fresh(op)), Output: out, Attribute: attrs}
	for _, v := range in {
		n.Input = append(n.Input, string(v))
	}
	g.g.Node = append(g.g.Node, n)
}

// Op appends a node with one output and returns it. An empty Value in inputs is an omitted
// optional input.
func (g *Graph) Op(op string, in []Value, attrs ...Attr) Value {
	return g.Ops(op, in, 1, attrs...)[0]
}

// Ops appends a node with n outputs.
func (g *Graph) Ops(op string, in []Value, n int, attrs ...Attr) []Value {
	out := make([]string, n)
	vals := make([]Value, n)
	for i := range out {
		out[i] = g.fresh(op + "_out")
		g.claim(out[i])
		vals[i] = Value(out[i])
	}
	g.node(op, in, out, attrs...)
	return vals
}

// Model wraps the graph in a ModelProto with the SDK's producer name and the opset. The graph
// must not be changed afterwards.
func (g *Graph) Model(doc string) *pb.ModelProto {
	gp := g.g
	gp.DocString = ptr(doc)
	return &pb.ModelProto{
		IrVersion:       ptr(int64(IRVersion)),
		ProducerName:    ptr("flextok-sdk"),
		ProducerVersion: ptr(ExporterVersion),
		Graph:           gp,
		OpsetImport:     []*pb.OperatorSetIdProto{{Domain: ptr(""), Version: ptr(int64(Opset))}},
	}
}

// ExporterVersion changes whenever the exported graphs change (it names cached exports).
// 2: shared constants; FSQ constants taken from sdk/fsq.
const ExporterVersion = "2"
