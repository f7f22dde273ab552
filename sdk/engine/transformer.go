package engine

import (
	"context"
	"fmt"
	"sync"

	"github.com/flextok-sdk/flextok/sdk/internal/kernels"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/nn"
)

// The shared transformer trunk (the official FlexTransformer) is written once in sdk/nn and
// run here by its eager executor on the kernels. Weights keep PyTorch's [out, in] layout and
// are packed once at load time.
//
// Every image is its own attention sequence: the official packer concatenates the images into
// one sequence with a block-diagonal mask and pads it to a multiple of 128, but padding rows
// are fully masked and dropped, so running each image as an independent sequence of the batch
// is the same computation without the padding. The Linear layers run over the rows of all
// images at once (one matrix product per layer per call).

// Suffixes of the weights that names.go has no constants for; each name built from them is
// checked against the config's table (model.Config.ExpectedTensors) when it is read, so a
// suffix that disagrees with the table is a load error, not a silent miss.
const (
	sufWeight    = ".weight"
	sufBias      = ".bias"
	sufPosembs   = ".posembs"   // PositionalEmbeddingAdder
	sufRegisters = ".registers" // Registers1D
	sufMaskToken = ".dropout_mask_token"
	sufNullCond  = ".nullcond"
)

// getFunc adapts a function to model.TensorSource (tests inject broken weights with it).
type getFunc func(name string) ([]float32, error)

func (f getFunc) Tensor(name string) ([]float32, error) { return f(name) }

// weightReader is model.PartReader (checked reads by canonical name, every problem collected)
// plus a reusable buffer for weights that are packed at once.
type weightReader struct {
	*model.PartReader
	scratch []float32
}

func newWeightReader(cfg *model.Config, part string, src model.TensorSource) *weightReader {
	return &weightReader{PartReader: model.NewPartReader(cfg, part, src)}
}

// scratchBuf returns the reader's reusable buffer of n elements. Its contents are valid until
// the next call: use it only for weights that are packed right away, so that loading never
// holds a second full copy of the model (issue: peak memory at most about 1.2x the weights).
func (r *weightReader) scratchBuf(n int) []float32 {
	if cap(r.scratch) < n {
		r.scratch = make([]float32, n)
	}
	return r.scratch[:n]
}

// err returns the reader's error with the engine's prefix.
func (r *weightReader) err() error {
	if err := r.Err(); err != nil {
		return fmt.Errorf("flextok/engine: %w", err)
	}
	return nil
}

// trunk is a FlexTransformer bound for the eager executor (the definition is nn.Forward).
type trunk = nn.Trunk[*nn.Linear]

// nnOpts are the kernel options as the nn package takes them.
func nnOpts(o kernels.Opts) nn.Options {
	return nn.Options{Threads: o.Threads, Fast: o.Fast, BF16: o.BF16}
}

// binder reads and packs the Linear layers that sdk/nn declares: stacked weights are read in
// place into the reader's scratch buffer and packed at once.
func (r *weightReader) binder(o kernels.Opts) nn.Binder[*nn.Linear] {
	return func(s nn.LinearSpec) *nn.Linear {
		w := r.scratchBuf(s.Out * s.In)
		per := s.Out / len(s.Weights) * s.In
		for j, name := range s.Weights {
			r.Read(name, w[j*per:(j+1)*per])
		}
		var b []float32
		if len(s.Biases) == 1 {
			b = r.Tensor(s.Biases[0], s.Out)
		} else {
			for _, name := range s.Biases {
				b = append(b, r.Tensor(name, s.Out/len(s.Biases))...)
			}
		}
		return nn.Pack(nnOpts(o), w, b, s.Out, s.In)
	}
}

// eagers pools the eager executors of trunk passes with their arenas, so that a pass
// allocates nothing once a pass of its size ran (the pool empties at garbage collection).
var eagers sync.Pool

// getEager returns a pooled executor reset for ctx and o; putEager returns it once nothing
// it allocated is used any more.
func getEager(ctx context.Context, o kernels.Opts) *nn.Eager {
	if e, ok := eagers.Get().(*nn.Eager); ok {
		e.Reset(ctx, nnOpts(o))
		return e
	}
	return nn.NewEager(ctx, nnOpts(o))
}

func putEager(e *nn.Eager) {
	e.Reset(context.Background(), nn.Options{})
	eagers.Put(e)
}

// readTrunk reads the blocks of the FlexTransformer module mod under prefix.
func readTrunk(r *weightReader, o kernels.Opts, prefix, mod string, t model.TrunkConfig) *trunk {
	return nn.NewTrunk(r.binder(o), prefix, mod, t)
}

// runTrunk runs the trunk over x [n·L, W] in place (the residual stream), with adaLN vectors
// mods (nil for a plain trunk), on e; ctx is checked before every block and at the end.
func runTrunk(ctx context.Context, e *nn.Eager, tr *trunk, x []float32, s nn.Seq[nn.Tensor], mods []nn.Tensor) error {
	W := tr.Cfg.Width
	if _, err := nn.Forward(e, tr, nn.NewTensor(x, len(x)/W, W), s, mods); err != nil {
		return err
	}
	return ctx.Err()
}

// patchify writes the patch vectors of one channels-first image x [C, h, w] into dst
// [nh·nw, ph·pw·C], patch (r, c) at row r·nw+c, element (pr·pw+pc)·C+ch (the official
// channels_first_to_last followed by PatchEmbedder's rearrangement).
func patchify(dst, x []float32, C, h, w, ph, pw int) {
	nh, nw := h/ph, w/pw
	D := ph * pw * C
	for r := 0; r < nh; r++ {
		for c := 0; c < nw; c++ {
			row := dst[(r*nw+c)*D:]
			for pr := 0; pr < ph; pr++ {
				for pc := 0; pc < pw; pc++ {
					base := (pr*pw + pc) * C
					pix := (r*ph+pr)*w + c*pw + pc
					for ch := 0; ch < C; ch++ {
						row[base+ch] = x[ch*h*w+pix]
					}
				}
			}
		}
	}
}

// unpatchify is the inverse of patchify: src [nh·nw, ph·pw·C] into a channels-first image
// x [C, h, w] (ToPatchesLinearHead's unpatchify followed by channels_last_to_first).
func unpatchify(x, src []float32, C, h, w, ph, pw int) {
	nh, nw := h/ph, w/pw
	D := ph * pw * C
	for r := 0; r < nh; r++ {
		for c := 0; c < nw; c++ {
			row := src[(r*nw+c)*D:]
			for pr := 0; pr < ph; pr++ {
				for pc := 0; pc < pw; pc++ {
					base := (pr*pw + pc) * C
					pix := (r*ph+pr)*w + c*pw + pc
					for ch := 0; ch < C; ch++ {
						x[ch*h*w+pix] = row[base+ch]
					}
				}
			}
		}
	}
}

// tracer receives copies of intermediate stages (tests compare them with the official
// reference stage by stage); nil discards them.
type tracer func(stage string, data []float32)

func (t tracer) emit(stage string, data []float32) {
	if t != nil {
		t(stage, append([]float32(nil), data...))
	}
}
