package flow

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Item is one velocity evaluation inside a batched [Denoiser] call.
type Item struct {
	// Image is the index of the image in the batch being sampled (the order of Options.Shapes or
	// Options.Noise). The Denoiser uses it to pick that image's condition, e.g. its token prefix.
	Image int
	// Uncond asks for the unconditional prediction: the condition is dropped, which is what the
	// official pipeline does by setting eval_dropout_mask = True for every image.
	Uncond bool
	// X is x_t, shape [C, h, w]. It is read only, and the conditional and unconditional items
	// of one image share it.
	X tensor.Tensor
	// V receives the velocity, with the shape of X. The sampler allocates V.Data; the
	// Denoiser overwrites every value (it may instead replace V.Data by a slice of the right
	// length that stays valid until Velocity is called again).
	V tensor.Tensor
}

// Denoiser is the velocity model v(x_t, t, cond) of the rectified flow: the FlexTok decoder,
// run by the pure-Go engine or by ONNX Runtime.
//
// The sampler makes exactly one call per step, with every evaluation the step needs: the
// conditional items of images 0..B-1 and, when guidance is on, then the unconditional items of
// images 0..B-1 (2B items). One call per step lets an executor run the conditional and
// unconditional passes as one batch (the decoder treats batch items independently, so
// batching changes nothing mathematically) or loop over the items when it cannot; the
// official pipeline makes two separate passes, which is the same computation. The condition
// itself (tokens, prefix length) is bound to the Denoiser by its constructor, keyed by
// Item.Image, so this package knows nothing about tokens.
//
// Velocity must be deterministic for bit-exact reproducibility, must not keep the Items after
// it returns and should return promptly with ctx.Err() when ctx is cancelled.
type Denoiser interface {
	Velocity(ctx context.Context, t float32, batch []Item) error
}

// DenoiserFunc adapts a function to the Denoiser interface.
type DenoiserFunc func(ctx context.Context, t float32, batch []Item) error

// Velocity calls f(ctx, t, batch).
func (f DenoiserFunc) Velocity(ctx context.Context, t float32, batch []Item) error {
	return f(ctx, t, batch)
}

// Step is what Options.OnStep receives after each Euler step. Its tensors are owned by the
// sampler, read only, and valid only during the callback: copy them (Tensor.Clone) to keep them.
type Step struct {
	Index int     // 0 for the first step, Steps-1 for the last
	Steps int     // total number of steps T
	T     float32 // time at which the model was evaluated, float32(i/T) with i = T-Index
	Scale float64 // guidance scale used at this step (1 when guidance is off)
	// X is the state after the step, at time (i-1)/T; after the last step it is the result.
	X []tensor.Tensor
	// X0 is the current estimate of the clean latent, x_t - t*v (from x_t = t*noise +
	// (1-t)*x0 and v = noise - x0), computed in float32 as x_t[j] - float32(t*v[j]) with the
	// guided velocity. It is meant for progressive previews.
	X0 []tensor.Tensor
}

// Options configures [Sample]. The zero value is not valid: Steps must be set, and either Shapes
// or Noise.
type Options struct {
	// Steps is the number of Euler steps T >= 1 (the model runs at t = T/T, ..., 1/T).
	Steps int

	// Guidance is the constant classifier-free guidance scale s. The zero value means 1, the
	// official default: no guidance and one model evaluation per image per step. Any other
	// finite value turns guidance on (two evaluations per image per step). To sample purely
	// unconditionally (s = 0) use GuidanceFunc.
	Guidance float64
	// GuidanceFunc, when set, gives the scale as a function of the time t = i/T (a float64,
	// like the Python float the official callable receives) and turns guidance on even if it
	// returns 1. It must return finite values. Set Guidance or GuidanceFunc, not both.
	GuidanceFunc func(t float64) float64
	// APG selects adaptive projected guidance (perform_norm_guidance=True: momentum -0.5,
	// eta 0, norm threshold 2.5) instead of plain CFG. It has no effect when guidance is off.
	APG bool

	// Shapes lists the latent shape [C, h, w] of each image (e.g. [16, 32, 32] for 256 px).
	// It may be nil when Noise is given; if both are given they must agree.
	Shapes [][]int
	// Noise, when non-nil, is the initial x_1 of each image, injected by the caller (the
	// official noise_read_key). It is copied, not modified. When nil, the noise is drawn with
	// the package's generator: Noise(Seed, Stream, Shapes...).
	Noise []tensor.Tensor
	// Seed and Stream seed the noise generator when Noise is nil.
	Seed, Stream uint64

	// OnStep, when set, is called after every step. A non-nil error stops sampling and Sample
	// returns it wrapped.
	OnStep func(Step) error
}

// guided reports whether the options turn guidance on (do_cfg in the official code).
func (o *Options) guided() bool {
	return o.GuidanceFunc != nil || (o.Guidance != 0 && o.Guidance != 1)
}

// Validate checks the options and returns the first problem found, or nil.
func (o Options) Validate() error {
	_, err := o.shapes()
	return err
}

// shapes validates o and returns the latent shape of each image.
func (o *Options) shapes() ([][]int, error) {
	if o.Steps < 1 {
		return nil, fmt.Errorf("flextok/flow: steps must be >= 1, got %d", o.Steps)
	}
	if math.IsNaN(o.Guidance) || math.IsInf(o.Guidance, 0) {
		return nil, fmt.Errorf("flextok/flow: guidance must be finite, got %v", o.Guidance)
	}
	if o.GuidanceFunc != nil && o.Guidance != 0 {
		return nil, fmt.Errorf("flextok/flow: set Guidance or GuidanceFunc, not both (Guidance is %v)", o.Guidance)
	}
	if o.Noise == nil {
		if len(o.Shapes) == 0 {
			return nil, errors.New("flextok/flow: no images: set Shapes or Noise")
		}
		for i, s := range o.Shapes {
			if err := checkShape(s); err != nil {
				return nil, fmt.Errorf("flextok/flow: image %d: %w", i, err)
			}
		}
		return o.Shapes, nil
	}
	if len(o.Noise) == 0 {
		return nil, errors.New("flextok/flow: no images: Noise is empty")
	}
	if o.Shapes != nil && len(o.Shapes) != len(o.Noise) {
		return nil, fmt.Errorf("flextok/flow: %d shapes but %d noise tensors", len(o.Shapes), len(o.Noise))
	}
	shapes := make([][]int, len(o.Noise))
	for i, n := range o.Noise {
		if err := checkShape(n.Shape); err != nil {
			return nil, fmt.Errorf("flextok/flow: noise %d: %w", i, err)
		}
		if err := n.Check(); err != nil {
			return nil, fmt.Errorf("flextok/flow: noise %d: %w", i, err)
		}
		if o.Shapes != nil && !tensor.SameShape(n, tensor.Tensor{Shape: o.Shapes[i]}) {
			return nil, fmt.Errorf("flextok/flow: noise %d has shape %v, Shapes[%d] is %v", i, n.Shape, i, o.Shapes[i])
		}
		shapes[i] = n.Shape
	}
	return shapes, nil
}

// Sample runs the MinRF rectified-flow sampler of the official pipeline and returns the clean
// latents x_0, one [C, h, w] tensor per image.
//
// For i = T, T-1, ..., 1 it evaluates the Denoiser at t = float32(i/T) (one call per step, see
// [Denoiser]), mixes the conditional and unconditional velocities with CFG or APG when
// guidance is on, and takes the Euler step x[j] -= float32(dt*v[j]) in float32 with
// dt = float32(1/T). ctx is checked before every step.
func Sample(ctx context.Context, den Denoiser, opt Options) ([]tensor.Tensor, error) {
	if den == nil {
		return nil, errors.New("flextok/flow: nil Denoiser")
	}
	if ctx == nil {
		return nil, errors.New("flextok/flow: nil context")
	}
	shapes, err := opt.shapes()
	if err != nil {
		return nil, err
	}
	nimg := len(shapes)

	// x_1: injected (copied) or drawn.
	var x []tensor.Tensor
	if opt.Noise != nil {
		x = make([]tensor.Tensor, nimg)
		for i, n := range opt.Noise {
			x[i] = n.Clone()
		}
	} else if x, err = Noise(opt.Seed, opt.Stream, shapes...); err != nil {
		return nil, err
	}

	guided := opt.guided()
	nitems := nimg
	if guided {
		nitems = 2 * nimg
	}
	vbuf := make([]tensor.Tensor, nitems) // velocity buffers owned by the sampler
	for k := range vbuf {
		vbuf[k] = tensor.Tensor{Shape: x[k%nimg].Shape, Data: make([]float32, len(x[k%nimg].Data))}
	}
	var apgs []*apg
	if guided && opt.APG {
		apgs = make([]*apg, nimg)
		for i := range apgs {
			apgs[i] = newAPG(len(x[i].Data))
		}
	}
	var x0 []tensor.Tensor
	if opt.OnStep != nil {
		x0 = make([]tensor.Tensor, nimg)
		for i := range x0 {
			x0[i] = tensor.Tensor{Shape: x[i].Shape, Data: make([]float32, len(x[i].Data))}
		}
	}

	T := opt.Steps
	dt := float32(1 / float64(T))
	batch := make([]Item, nitems)
	vel := make([][]float32, nimg) // the (guided) velocity of each image at this step
	for step := 0; step < T; step++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("flextok/flow: step %d of %d: %w", step, T, err)
		}
		t64 := float64(T-step) / float64(T)
		t := float32(t64)
		scale := 1.0
		if guided {
			scale = opt.Guidance
			if opt.GuidanceFunc != nil {
				scale = opt.GuidanceFunc(t64)
				if math.IsNaN(scale) || math.IsInf(scale, 0) {
					return nil, fmt.Errorf("flextok/flow: step %d of %d: GuidanceFunc(%v) returned %v, want a finite scale", step, T, t64, scale)
				}
			}
		}

		for k := range batch {
			batch[k] = Item{Image: k % nimg, Uncond: k >= nimg, X: x[k%nimg], V: vbuf[k]}
		}
		if err := den.Velocity(ctx, t, batch); err != nil {
			return nil, fmt.Errorf("flextok/flow: step %d of %d (t=%v): %w", step, T, t, err)
		}
		for k := range batch {
			if got, want := len(batch[k].V.Data), len(x[k%nimg].Data); got != want {
				return nil, fmt.Errorf("flextok/flow: step %d of %d: denoiser returned %d velocity values for item %d, want %d", step, T, got, k, want)
			}
		}

		for i := 0; i < nimg; i++ {
			c := batch[i].V.Data
			switch {
			case !guided:
				vel[i] = c
			case opt.APG:
				vel[i] = vbuf[i].Data // may alias c: apply allows it
				apgs[i].apply(vel[i], c, batch[nimg+i].V.Data, scale)
			default:
				vel[i] = vbuf[i].Data
				cfg(vel[i], c, batch[nimg+i].V.Data, scale)
			}
		}

		// Euler step (and preview), float32, product rounded before the subtraction.
		for i := range x {
			xi, v := x[i].Data, vel[i][:len(x[i].Data)]
			if x0 != nil {
				p := x0[i].Data[:len(xi)]
				for j := range xi {
					p[j] = xi[j] - float32(t*v[j])
				}
			}
			for j := range xi {
				xi[j] -= float32(dt * v[j])
			}
		}

		if opt.OnStep != nil {
			s := Step{Index: step, Steps: T, T: t, Scale: scale, X: x, X0: x0}
			if err := opt.OnStep(s); err != nil {
				return nil, fmt.Errorf("flextok/flow: step %d of %d: callback: %w", step, T, err)
			}
		}
	}
	return x, nil
}
