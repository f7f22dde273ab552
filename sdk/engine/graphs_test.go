package engine

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// countingGraphs wraps Graphs and counts the calls (one Velocity per sampler step).
type countingGraphs struct {
	Graphs
	velocity, vae int
	items         []int
}

func (c *countingGraphs) Velocity(ctx context.Context, f *VelocityFeed) ([]float32, error) {
	c.velocity++
	c.items = append(c.items, f.N)
	return c.Graphs.Velocity(ctx, f)
}

func (c *countingGraphs) DecodeLatents(ctx context.Context, l tensor.Tensor) (tensor.Tensor, error) {
	c.vae++
	return c.Graphs.DecodeLatents(ctx, l)
}

func defaultPayloads(t *testing.T, e *Engine) []*payload.Payload {
	t.Helper()
	H, W := e.ImageSize()
	var ps []*payload.Payload
	for i := 0; i < 2; i++ {
		ids := make([]uint32, e.MaxTokens())
		for j := range ids {
			ids[j] = uint32((i*7919 + j*104729) % 64000)
		}
		ps = append(ps, &payload.Payload{Model: e.Identity(), Image: payload.Image{Height: H, Width: W}, IDs: ids})
	}
	return ps
}

// TestGraphExecutorEqualsEngine: a GraphExecutor over the engine's own networks decodes bit
// for bit as the engine (the sampler, noise, guidance and checks are the same code), with one
// graph run per sampler step over the conditional and unconditional items of every image.
func TestGraphExecutorEqualsEngine(t *testing.T) {
	e := loadDefault(t)
	m, g, err := e.Graphs()
	if err != nil {
		t.Fatal(err)
	}
	cg := &countingGraphs{Graphs: g}
	closed := 0
	x, err := NewGraphExecutor(m, cg, func() error { closed++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	ps := defaultPayloads(t, e)
	ctx := context.Background()
	for _, o := range []DecodeOptions{
		{Steps: 3, Guidance: 3, APG: true, Seed: 5, K: 4},
		{Steps: 2, Guidance: 1, Seed: 1},
	} {
		cg.velocity, cg.vae, cg.items = 0, 0, nil
		want, err := e.DecodeBatch(ctx, ps, o)
		if err != nil {
			t.Fatal(err)
		}
		var tm GraphTimings
		got, err := x.DecodeBatch(WithGraphTimings(ctx, &tm), ps, o)
		if err != nil {
			t.Fatal(err)
		}
		if tm.VelocityCalls != o.Steps || tm.Velocity <= 0 || tm.VAE <= 0 {
			t.Errorf("%+v: timings %+v, want %d velocity calls and both times", o, tm, o.Steps)
		}
		for i := range want {
			if !tensor.SameShape(got[i], want[i]) {
				t.Fatalf("%+v image %d: shape %v, want %v", o, i, got[i].Shape, want[i].Shape)
			}
			for j := range want[i].Data {
				if math.Float32bits(got[i].Data[j]) != math.Float32bits(want[i].Data[j]) {
					t.Fatalf("%+v image %d value %d: %v, engine %v", o, i, j, got[i].Data[j], want[i].Data[j])
				}
			}
		}
		items := len(ps)
		if o.Guidance != 1 {
			items *= 2
		}
		if cg.velocity != o.Steps || cg.vae != 1 {
			t.Errorf("%+v: %d velocity runs and %d VAE runs, want %d and 1", o, cg.velocity, cg.vae, o.Steps)
		}
		for _, n := range cg.items {
			if n != items {
				t.Errorf("%+v: a velocity run of %d items, want %d (cond and uncond batched)", o, n, items)
			}
		}
	}
	if _, err := x.Encode(ctx, nil, EncodeOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Encode: %v, want ErrUnsupported", err)
	}
	first, second := x.Close(), x.Close()
	if first != nil || second != nil || closed != 1 {
		t.Errorf("Close twice called the close function %d times", closed)
	}
}

// badGraphs answers with wrong shapes or errors.
type badGraphs struct {
	v   []float32
	img tensor.Tensor
	err error
}

func (b *badGraphs) Velocity(context.Context, *VelocityFeed) ([]float32, error) { return b.v, b.err }
func (b *badGraphs) DecodeLatents(context.Context, tensor.Tensor) (tensor.Tensor, error) {
	return b.img, nil
}

// TestGraphExecutorBadInput: wrong graph outputs, other models' payloads, other sizes and
// bad sizes give errors that say what was wrong, never a panic.
func TestGraphExecutorBadInput(t *testing.T) {
	e := loadDefault(t)
	m, g, err := e.Graphs()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := defaultPayloads(t, e)[0]
	o := DecodeOptions{Steps: 1, Guidance: 2, Seed: 1}
	s := m.Sizes
	for _, c := range []struct {
		name string
		g    *badGraphs
		want string
	}{
		{"short velocity", &badGraphs{v: make([]float32, 3)}, "the graph gave 3 values for 2 items"},
		{"velocity error", &badGraphs{err: errors.New("boom")}, "boom"},
		{"bad image", &badGraphs{v: make([]float32, 2*s.C*s.H*s.W), img: tensor.Tensor{Shape: []int{1, 3, 2, 2}, Data: make([]float32, 12)}}, "the VAE graph gave shape [1 3 2 2]"},
	} {
		x, err := NewGraphExecutor(m, c.g, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.Decode(ctx, p, o); err == nil || !strings.Contains(err.Error(), c.want) ||
			(c.name != "velocity error") != errors.Is(err, ErrGraphMismatch) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	x, err := NewGraphExecutor(m, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := *p
	other.Model.Digest[0] ^= 1
	if _, err := x.Decode(ctx, &other, o); !errors.Is(err, ErrModelMismatch) {
		t.Errorf("another model's payload: %v, want ErrModelMismatch", err)
	}
	if _, err := x.Decode(ctx, p, DecodeOptions{Steps: 1, Size: 2 * s.Height}); !errors.Is(err, ErrArgument) || !strings.Contains(err.Error(), "exported for") {
		t.Errorf("another size: %v, want ErrArgument naming the exported size", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := x.Decode(canceled, p, o); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*GraphModel)
		g    Graphs
	}{
		{"nil graphs", func(*GraphModel) {}, nil},
		{"zero size", func(m *GraphModel) { m.Sizes.C = 0 }, g},
		{"registers", func(m *GraphModel) { m.Sizes.R++ }, g},
		{"levels", func(m *GraphModel) { m.Identity.Levels = []int{1} }, g},
		{"timestep", func(m *GraphModel) { m.MaxTimestep = math.NaN() }, g},
	} {
		mm := m
		mm.Identity.Levels = append([]int(nil), m.Identity.Levels...)
		c.edit(&mm)
		if _, err := NewGraphExecutor(mm, c.g, nil); !errors.Is(err, ErrArgument) {
			t.Errorf("%s: %v, want ErrArgument", c.name, err)
		}
	}
}
