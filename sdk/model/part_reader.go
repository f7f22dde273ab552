package model

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// TensorSource gives tensors by canonical name as float32 (a *Model, or a stub in tests). A
// source that can also fill a caller's buffer (TensorInto, as *Model) lets PartReader.Read
// avoid a copy.
type TensorSource interface {
	Tensor(name string) ([]float32, error)
}

type tensorIntoSource interface {
	TensorInto(name string, dst []float32) error
}

// PartReader reads the tensors of one part of a checkpoint ("encoder", "decoder") by
// canonical name for an executor: each name, length and value is checked against the config's
// weight table (Config.ExpectedTensors) and every problem is collected, so one error (Err)
// names all missing or corrupt tensors. The Go engine and the ONNX export read through it.
type PartReader struct {
	part   string
	shapes map[string][]int
	src    TensorSource
	errs   []string
}

// NewPartReader reads part of cfg's checkpoint from src.
func NewPartReader(cfg *Config, part string, src TensorSource) *PartReader {
	r := &PartReader{part: part, shapes: map[string][]int{}, src: src}
	for _, t := range cfg.ExpectedTensors() {
		if t.Part == part {
			r.shapes[t.Name] = t.Shape
		}
	}
	return r
}

// Read fills dst with tensor name, which must have len(dst) finite values; on a problem it
// records it and zeroes dst, so the caller can go on collecting problems.
func (r *PartReader) Read(name string, dst []float32) {
	n := len(dst)
	fail := func(format string, args ...any) {
		r.errs = append(r.errs, name+" ("+fmt.Sprintf(format, args...)+")")
		clear(dst)
	}
	shape, ok := r.shapes[name]
	if !ok {
		fail("not in the config's weight table")
		return
	}
	size := 1
	for _, s := range shape {
		size *= s
	}
	if size != n {
		fail("shape %v, want %d values", shape, n)
		return
	}
	if into, ok := r.src.(tensorIntoSource); ok {
		if err := into.TensorInto(name, dst); err != nil {
			fail("%v", err)
			return
		}
	} else {
		v, err := r.src.Tensor(name)
		if err == nil && len(v) != n {
			err = fmt.Errorf("%d values, want %d", len(v), n)
		}
		if err != nil {
			fail("%v", err)
			return
		}
		copy(dst, v)
	}
	for i, x := range dst {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			fail("value %d is %v: a corrupt checkpoint", i, x)
			return
		}
	}
}

// Tensor reads name (n values) into a new slice, as Read.
func (r *PartReader) Tensor(name string, n int) []float32 {
	dst := make([]float32, n)
	r.Read(name, dst)
	return dst
}

// Has reports whether the table lists name.
func (r *PartReader) Has(name string) bool { _, ok := r.shapes[name]; return ok }

// Module returns prefix + the name of the part's module of the given class (mods from the
// config), recording a problem when there is none.
func (r *PartReader) Module(prefix string, mods []Module, class string) string {
	for _, m := range mods {
		if m.Class == class {
			return prefix + m.Name
		}
	}
	r.errs = append(r.errs, "no "+class+" module")
	return prefix + "?"
}

// Err returns one error naming every problem so far (nil when there is none).
func (r *PartReader) Err() error {
	if len(r.errs) == 0 {
		return nil
	}
	sort.Strings(r.errs)
	return fmt.Errorf("%s: missing or invalid tensors: %s", r.part, strings.Join(r.errs, ", "))
}
