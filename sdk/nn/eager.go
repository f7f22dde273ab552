package nn

import (
	"context"
	"fmt"
	"math"

	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
)

// Tensor is Eager's tensor: Rows rows of Cols float32 values, row-major.
type Tensor struct {
	Data       []float32
	Rows, Cols int
	scratch    bool // allocated by the Eager's arena: ops may reuse it
}

// NewTensor wraps data as a [rows, cols] tensor (the caller keeps ownership).
func NewTensor(data []float32, rows, cols int) Tensor {
	if len(data) < rows*cols {
		panic(fmt.Sprintf("flextok/nn: tensor [%d, %d] over %d values", rows, cols, len(data)))
	}
	return Tensor{Data: data[:rows*cols], Rows: rows, Cols: cols}
}

// Linear is Eager's Linear layer: the weights packed once for the kernels' path.
type Linear struct {
	W       *kernels.Weights // (Out, In), packed
	B       []float32        // (Out) or nil
	In, Out int
}

// Pack packs w [out, in] (PyTorch's layout) for the given path; b may be nil. The Linear
// keeps b, not a copy.
func Pack(o Options, w, b []float32, out, in int) *Linear {
	return &Linear{W: kernels.PackWeights(o.kernels(), w, out, in), B: b, In: in, Out: out}
}

// Forward computes y [rows, Out] from x [rows, In] (the engine's direct use, outside a pass).
func (l *Linear) Forward(o Options, y, x []float32, rows int) {
	kernels.LinearPacked(o.kernels(), y[:rows*l.Out], x[:rows*l.In], l.W, l.B, rows)
}

// Options select Eager's kernels (sdk/internal/kernels.Opts): the zero value is the portable
// path on the calling goroutine.
type Options struct {
	Threads int  // goroutines a kernel may use (never along a reduction: no bit changes)
	Fast    bool // the platform's fast path (AVX-512): bounded, not bit-identical
	BF16    bool // Pack stores bfloat16 weights (kernels.Opts.BF16); Linear then rounds x to bf16
}

func (o Options) kernels() kernels.Opts {
	return kernels.Opts{Threads: o.Threads, Fast: o.Fast, BF16: o.BF16}
}

// Eager runs the ops at once on the Go kernels. It is one pass's executor: not safe for
// concurrent use; make one per goroutine and pass.
type Eager struct {
	ctx context.Context
	o   kernels.Opts
	a   arena
}

var _ Ops[Tensor, *Linear] = (*Eager)(nil)

// NewEager returns an executor for one pass; ctx is checked at every Block.
func NewEager(ctx context.Context, o Options) *Eager {
	return &Eager{ctx: ctx, o: o.kernels()}
}

// Reset prepares e for another pass, keeping its arena's buffers (so that a pool of Eagers
// makes passes allocate nothing): every tensor e returned before is then invalid.
func (e *Eager) Reset(ctx context.Context, o Options) {
	e.ctx, e.o, e.a.next = ctx, o.kernels(), 0
}

// arena hands out the buffers of a pass by slot: the k-th allocation after a reset reuses the
// k-th buffer when it is large enough. A trunk's blocks allocate the same sizes in the same
// order, so after the first block a pass allocates nothing (without the arena, allocation made
// the trunk 43% slower in a prototype).
type arena struct {
	bufs [][]float32
	next int
}

func (a *arena) alloc(n int) []float32 {
	if a.next == len(a.bufs) {
		a.bufs = append(a.bufs, nil)
	}
	b := a.bufs[a.next]
	if cap(b) < n {
		b = make([]float32, n)
		a.bufs[a.next] = b
	}
	a.next++
	return b[:n]
}

func (e *Eager) alloc(rows, cols int) Tensor {
	return Tensor{Data: e.a.alloc(rows * cols), Rows: rows, Cols: cols, scratch: true}
}

// into returns x's storage when the executor owns it, else a new tensor of x's shape.
func (e *Eager) into(x Tensor) Tensor {
	if x.scratch {
		return x
	}
	return e.alloc(x.Rows, x.Cols)
}

// Block implements Ops: it checks the context and recycles the arena.
func (e *Eager) Block(string) (func(), error) {
	if err := e.ctx.Err(); err != nil {
		return nil, err
	}
	e.a.next = 0
	return func() {}, nil
}

// Err is the context's error (checked once more after a trunk's last block).
func (e *Eager) Err() error { return e.ctx.Err() }

func (e *Eager) Linear(x Tensor, l *Linear) Tensor {
	if x.Cols != l.In {
		panic(fmt.Sprintf("flextok/nn: Linear of %d inputs on %d columns", l.In, x.Cols))
	}
	y := e.alloc(x.Rows, l.Out)
	kernels.LinearPacked(e.o, y.Data, x.Data, l.W, l.B, x.Rows)
	return y
}

func (e *Eager) LayerNorm(x Tensor, eps float32) Tensor {
	y := e.into(x)
	kernels.LayerNorm(e.o, y.Data, x.Data, x.Rows, x.Cols, eps)
	return y
}

// RMSNorm: the mean of squares in float64 in index order, rstd = 1/sqrt(ms+eps) rounded once
// to float32, y = x·rstd in float32.
func (e *Eager) RMSNorm(x Tensor, eps float32) Tensor {
	y := e.into(x)
	n := x.Cols
	for r := 0; r < x.Rows; r++ {
		xr, yr := x.Data[r*n:(r+1)*n], y.Data[r*n:(r+1)*n]
		var ms float64
		for _, v := range xr {
			ms += float64(v) * float64(v)
		}
		rstd := float32(1 / math.Sqrt(ms/float64(n)+float64(eps)))
		for j, v := range xr {
			yr[j] = v * rstd
		}
	}
	return y
}

func (e *Eager) QKNorm(qkv Tensor, heads, headDim int, eps float32) Tensor {
	W := heads * headDim
	if qkv.Cols != 3*W {
		panic(fmt.Sprintf("flextok/nn: QKNorm of %d×%d heads on %d columns", heads, headDim, qkv.Cols))
	}
	y := qkv
	if !qkv.scratch {
		y = e.alloc(qkv.Rows, qkv.Cols)
		copy(y.Data, qkv.Data)
	}
	kernels.LayerNormHeads(e.o, y.Data, y.Rows, 3*W, heads, headDim, eps)
	kernels.LayerNormHeads(e.o, y.Data[W:], y.Rows, 3*W, heads, headDim, eps)
	return y
}

func (e *Eager) Attention(qkv Tensor, heads, headDim int, scale float32, s Seq[Tensor]) Tensor {
	W := heads * headDim
	if qkv.Cols != 3*W || s.L < 1 || qkv.Rows%s.L != 0 {
		panic(fmt.Sprintf("flextok/nn: Attention of %d×%d heads on [%d, %d] in sequences of %d", heads, headDim, qkv.Rows, qkv.Cols, s.L))
	}
	n := qkv.Rows / s.L
	out := e.alloc(qkv.Rows, W)
	var mask kernels.Mask
	if s.Causal {
		mask = kernels.Mask{Kind: kernels.MaskPrefixCausal, Prefix: s.Prefix}
	}
	d := kernels.AttnDims{Batch: n, Heads: heads, SeqQ: s.L, SeqK: s.L, HeadDim: headDim, LdQ: 3 * W, LdK: 3 * W, LdV: 3 * W, LdO: W}
	if s.Keys == nil {
		kernels.Attention(e.o, out.Data, qkv.Data, qkv.Data[W:], qkv.Data[2*W:], d, scale, mask)
		return out
	}
	// Per-sequence key counts: each sequence on its own with its mask.
	d.Batch = 1
	for q := 0; q < n; q++ {
		keys := int(s.Keys.Data[q])
		m := kernels.Mask{Kind: kernels.MaskFunc, Allow: func(qi, ki int) bool { return ki < keys && mask.Allowed(qi, ki) }}
		src := qkv.Data[q*s.L*3*W : (q+1)*s.L*3*W]
		kernels.Attention(e.o, out.Data[q*s.L*W:(q+1)*s.L*W], src, src[W:], src[2*W:], d, scale, m)
	}
	return out
}

// segments calls fn for each run of rows of x that shares one adaLN part of mod (see Modulate);
// p is the offset of that part in mod's row.
func segments(x, mod Tensor, chunks int, s Seq[Tensor], fn func(row0, rows, p int)) {
	W := x.Cols
	E := mod.Cols / (chunks * W)
	if E*chunks*W != mod.Cols || mod.Rows != 1 || (E != 1 && E != 2) {
		panic(fmt.Sprintf("flextok/nn: adaLN vector [%d, %d] for width %d and %d chunks", mod.Rows, mod.Cols, W, chunks))
	}
	if E == 1 {
		fn(0, x.Rows, 0)
		return
	}
	for r0 := 0; r0 < x.Rows; r0 += s.L {
		if s.Prefix > 0 {
			fn(r0, min(s.Prefix, s.L), 0)
		}
		if s.L > s.Prefix {
			fn(r0+s.Prefix, s.L-s.Prefix, chunks*W)
		}
	}
}

func (e *Eager) Modulate(x, mod Tensor, chunks, shift, scale int, s Seq[Tensor]) Tensor {
	y := e.into(x)
	W := x.Cols
	segments(x, mod, chunks, s, func(row0, rows, p int) {
		m := mod.Data[p:]
		kernels.Modulate(e.o, y.Data[row0*W:(row0+rows)*W], x.Data[row0*W:(row0+rows)*W], m[shift*W:(shift+1)*W], m[scale*W:(scale+1)*W], rows, W)
	})
	return y
}

func (e *Eager) GatedAdd(x, y, mod Tensor, chunks, gate int, s Seq[Tensor]) Tensor {
	W := x.Cols
	segments(x, mod, chunks, s, func(row0, rows, p int) {
		g := mod.Data[p+gate*W:]
		kernels.GatedResidual(e.o, x.Data[row0*W:(row0+rows)*W], y.Data[row0*W:(row0+rows)*W], g[:W], rows, W)
	})
	return x
}

func (e *Eager) Add(x, y Tensor) Tensor {
	kernels.Add(e.o, x.Data, x.Data, y.Data)
	return x
}

func (e *Eager) SiLU(x Tensor) Tensor {
	y := e.into(x)
	kernels.SiLU(e.o, y.Data, x.Data)
	return y
}

// GELU: x·Φ(x) = x·(1+erf(x/√2))/2 in float64, rounded once (math.Erf is pure Go on every
// platform this builds for).
func (e *Eager) GELU(x Tensor) Tensor {
	y := e.into(x)
	for i, v := range x.Data {
		f := float64(v)
		y.Data[i] = float32(f * 0.5 * (1 + math.Erf(f/math.Sqrt2)))
	}
	return y
}

func (e *Eager) SwiGLU(a, b Tensor) Tensor {
	y := e.into(a)
	kernels.SwiGLU(e.o, y.Data, a.Data, b.Data)
	return y
}

// AddRows: y = x + table row by row, in float32.
func (e *Eager) AddRows(x Tensor, table []float32, name string) Tensor {
	n := len(table)
	if n == 0 || n%x.Cols != 0 || len(x.Data)%n != 0 {
		panic(fmt.Sprintf("flextok/nn: AddRows %s of %d values to [%d, %d]", name, n, x.Rows, x.Cols))
	}
	y := e.into(x)
	for s := 0; s < len(x.Data); s += n {
		xs, ys := x.Data[s:s+n], y.Data[s:s+n]
		for i, v := range xs {
			ys[i] = v + table[i]
		}
	}
	return y
}

func (e *Eager) FillAfter(x, keep Tensor, token []float32, name string, L int) Tensor {
	W := x.Cols
	if len(token) != W || L < 1 || x.Rows%L != 0 || keep.Rows*keep.Cols != x.Rows/L {
		panic(fmt.Sprintf("flextok/nn: FillAfter %s of %d on [%d, %d] in sequences of %d, %d counts", name, len(token), x.Rows, x.Cols, L, keep.Rows*keep.Cols))
	}
	y := e.into(x)
	for q := 0; q < x.Rows/L; q++ {
		k := int(keep.Data[q])
		for j := 0; j < L; j++ {
			row := y.Data[(q*L+j)*W : (q*L+j+1)*W]
			if j >= k {
				copy(row, token)
			} else if !x.scratch {
				copy(row, x.Data[(q*L+j)*W:(q*L+j+1)*W])
			}
		}
	}
	return y
}

func (e *Eager) Embed(ids Tensor, table []float32, rows, cols int, name string) Tensor {
	if ids.Cols != 1 || len(table) < rows*cols {
		panic(fmt.Sprintf("flextok/nn: Embed %s [%d, %d] of ids [%d, %d]", name, rows, cols, ids.Rows, ids.Cols))
	}
	y := e.alloc(ids.Rows, cols)
	for r, v := range ids.Data[:ids.Rows] {
		id := int(v)
		if float32(id) != v || id < 0 || id >= rows {
			panic(fmt.Sprintf("flextok/nn: Embed %s: id %v outside [0, %d)", name, v, rows))
		}
		copy(y.Data[r*cols:(r+1)*cols], table[id*cols:(id+1)*cols])
	}
	return y
}

// Sinusoid: args = float32(t·f_k); cos and sin in float64, rounded once (math.Sin and
// math.Cos are pure Go on every platform, so this is bit-identical everywhere).
func (e *Eager) Sinusoid(t Tensor, freqs []float32, dims int) Tensor {
	if t.Cols != 1 || dims < 2*len(freqs) || dims > 2*len(freqs)+1 {
		panic(fmt.Sprintf("flextok/nn: Sinusoid of %d frequencies into %d dims on [%d, %d]", len(freqs), dims, t.Rows, t.Cols))
	}
	y := e.alloc(t.Rows, dims)
	half := len(freqs)
	for r := 0; r < t.Rows; r++ {
		row := y.Data[r*dims : (r+1)*dims]
		for k, f := range freqs {
			a := float64(t.Data[r] * f)
			row[k] = float32(math.Cos(a))
			row[half+k] = float32(math.Sin(a))
		}
		for i := 2 * half; i < dims; i++ {
			row[i] = 0
		}
	}
	return y
}
