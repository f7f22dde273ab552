package engine

import (
	"context"
	"fmt"
	"image"
	"runtime"

	"github.com/flextok-sdk/flextok/sdk/flow"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Executor is what every executor of a FlexTok model offers: the pure-Go *Engine of this
// package and package native's ONNX Runtime *native.Backend (which says so at compile time,
// without sdk/ importing cgo). Code written against it (the CLI, sdk/service, a server)
// chooses the executor at run time. Both make the same payloads (the same identity, hints and
// preprocessing, through EncodeImages) and decode them with the same sampler, noise and
// checks (DecodePayloads); their images are equal bit for bit between Engines on the portable
// path, and within the bounds of docs/conformance.md across executors. Implementations are
// safe for concurrent use.
//
// Sizes: ImageSize is where an executor encodes (and decodes payloads without a recorded
// size) by default. Which other sizes run is the executor's own business: an Engine runs any
// size its model's positional tables allow (Engine.Geometry), a native.Backend only the size
// its graphs were exported for. A size an executor does not run fails with an error wrapping
// ErrArgument (asked for in the options) or ErrUnsupported (recorded in a payload).
type Executor interface {
	// Identity is the model identity written into every payload the executor makes.
	Identity() payload.Model
	// Accepts reports whether payloads made by model p decode here (Identity.Accepts: the
	// same content digest or legacy file digest, FSQ levels and length; names not compared).
	Accepts(p *payload.Model) bool
	// Hints are the decode hints written into payloads (nil: none).
	Hints() *payload.Hints
	// ImageSize is the default image size in pixels (height, width).
	ImageSize() (height, width int)
	// MaxTokens is the number of tokens an image encodes to (the model's registers).
	MaxTokens() int
	// DefaultDecodeOptions returns the settings p decodes with by default: its hints, else the
	// model's, else the official README's (HintedDecodeOptions).
	DefaultDecodeOptions(p *payload.Payload) DecodeOptions

	// Encode turns an image into a token payload.
	Encode(ctx context.Context, img image.Image, o EncodeOptions) (*payload.Payload, error)
	// EncodeBatch encodes several images in one forward pass; the payloads are Encode's.
	EncodeBatch(ctx context.Context, imgs []image.Image, o EncodeOptions) ([]*payload.Payload, error)
	// Decode turns a payload (or its first K tokens) into an image tensor [3, H, W],
	// unclamped.
	Decode(ctx context.Context, p *payload.Payload, o DecodeOptions) (tensor.Tensor, error)
	// DecodeBatch decodes several payloads with the same options in one sampler run; each
	// image is Decode's for its payload (bit for bit on an Engine).
	DecodeBatch(ctx context.Context, ps []*payload.Payload, o DecodeOptions) ([]tensor.Tensor, error)
	// DecodeImage is Decode followed by the conversion to 8-bit RGB.
	DecodeImage(ctx context.Context, p *payload.Payload, o DecodeOptions) (*image.NRGBA, error)

	// Close releases what the executor holds outside Go's memory (ONNX Runtime sessions,
	// temporary files); an Engine holds nothing and its Close does nothing. The executor must
	// not be used afterwards.
	Close() error
}

var _ Executor = (*Engine)(nil)

// CheckTokens checks the token sequences a decoder binds (Decoder.Bind, native's
// Backend.Bind), the rules both executors share: at least one sequence; k nil, or one prefix
// length per sequence; at most registers ids per sequence, each below codebook; every prefix
// length (k[i], else len(ids[i])) in [1, registers]. It returns the prefix lengths. The
// errors name the image and token but not the caller, which prefixes them with its own
// package and method ("flextok/engine: Bind: ...").
func CheckTokens(ids [][]uint32, k []int, registers, codebook int) ([]int, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("no token sequences")
	}
	if k != nil && len(k) != len(ids) {
		return nil, fmt.Errorf("%d prefix lengths for %d token sequences", len(k), len(ids))
	}
	keep := make([]int, len(ids))
	for i, s := range ids {
		if len(s) > registers {
			return nil, fmt.Errorf("image %d has %d tokens, more than the %d registers", i, len(s), registers)
		}
		for j, id := range s {
			if int64(id) >= int64(codebook) {
				return nil, fmt.Errorf("image %d token %d: id %d is outside the codebook [0, %d)", i, j, id, codebook)
			}
		}
		keep[i] = len(s)
		if k != nil {
			keep[i] = k[i]
		}
		if keep[i] < 1 || keep[i] > registers {
			return nil, fmt.Errorf("image %d: prefix length k = %d outside [1, %d]", i, keep[i], registers)
		}
	}
	return keep, nil
}

// CheckTime checks the t given to a decoder's Velocity: in [0, maxTimestep], as the official
// TimestepEmbedder asserts (NaN is outside). The error names neither caller nor method.
func CheckTime(t float32, maxTimestep float64) error {
	if !(t >= 0 && float64(t) <= maxTimestep) {
		return fmt.Errorf("t = %v outside [0, %v]", t, maxTimestep)
	}
	return nil
}

// CheckItem checks one item given to the Velocity of a decoder bound to images token
// sequences, whose latents have channels channels, the rules both executors share: the image
// index in [0, images), x_t a valid tensor [channels, h, w] with h, w >= 1, and V, when it has
// a shape, of x_t's shape. It returns h and w; executors then check the sizes they run (an
// Engine its patch grid and positional table, a native.Backend its exported size). The errors
// name neither the item nor the caller, which prefix them ("flextok/engine: Velocity: item 3:
// ...").
func CheckItem(it *flow.Item, images, channels int) (h, w int, err error) {
	if it.Image < 0 || it.Image >= images {
		return 0, 0, fmt.Errorf("image %d, but %d token sequences are bound", it.Image, images)
	}
	x := it.X
	if x.Check() != nil || len(x.Shape) != 3 || x.Shape[0] != channels || x.Shape[1] < 1 || x.Shape[2] < 1 {
		return 0, 0, fmt.Errorf("x_t shape %v with %d values, want [%d, h, w]", x.Shape, len(x.Data), channels)
	}
	if it.V.Shape != nil && !tensor.SameShape(it.V, tensor.Tensor{Shape: x.Shape}) {
		return 0, 0, fmt.Errorf("v shape %v differs from x_t shape %v", it.V.Shape, x.Shape)
	}
	return x.Shape[1], x.Shape[2], nil
}

// The shared pipelines: every executor encodes and decodes through them, with its own
// networks as the functions they call.

// EncodeImages is EncodeBatch for any executor of a model with identity id: size maps
// EncodeOptions.Size to the image size to encode at (or refuses it); EncodeImages
// preprocesses imgs to that size (concurrently), tokenizes them with one call of tokenize
// (images [B, 3, height, width] in [-1, 1] → MaxTokens ids each) and builds the payloads, with
// hints. Package native's Backend uses it, so both executors make the same payloads.
func EncodeImages(ctx context.Context, imgs []image.Image, o EncodeOptions, id payload.Model, hints *payload.Hints,
	size func(int) (height, width int, err error),
	tokenize func(context.Context, tensor.Tensor) ([][]uint32, error)) ([]*payload.Payload, error) {
	if o.K < 0 || o.K > id.MaxTokens {
		return nil, fmt.Errorf("%w: k = %d, want 1..%d (0 for all)", ErrArgument, o.K, id.MaxTokens)
	}
	height, width, err := size(o.Size)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrArgument, err)
	}
	B := len(imgs)
	if B == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := 3 * height * width
	x := tensor.Tensor{Shape: []int{B, 3, height, width}, Data: make([]float32, B*n)}
	recs := make([]payload.Image, B)
	errs := make([]error, B)
	pre := ftimage.Preprocess{Height: height, Width: width, Filter: o.Filter}
	one := func(i int) {
		if imgs[i] == nil {
			errs[i] = fmt.Errorf("%w: nil image", ErrArgument)
			return
		}
		t, rec, err := ftimage.ToTensor(imgs[i], pre)
		if err != nil {
			errs[i] = err
			return
		}
		if len(t.Data) != n {
			errs[i] = fmt.Errorf("%w: preprocessed to %v, want [3 %d %d]", ErrUnsupported, t.Shape, height, width)
			return
		}
		copy(x.Data[i*n:(i+1)*n], t.Data)
		recs[i] = rec
	}
	// Preprocessing (decode to RGB, resize, crop) is independent per image: spread it over the
	// CPUs, each worker taking the next index.
	forEach(runtime.GOMAXPROCS(0), B, one)
	for i, err := range errs {
		if err != nil && B > 1 {
			return nil, fmt.Errorf("flextok/engine: EncodeBatch: image %d of %d: %w", i, B, err)
		}
		if err != nil {
			return nil, err
		}
	}
	ids, err := tokenize(ctx, x)
	if err != nil {
		return nil, err
	}
	if len(ids) != B {
		return nil, fmt.Errorf("flextok/engine: EncodeBatch: %d token sequences for %d images", len(ids), B)
	}
	out := make([]*payload.Payload, B)
	for i, seq := range ids {
		k := o.K
		if k == 0 {
			k = len(seq)
		}
		out[i] = &payload.Payload{Model: id, Image: recs[i], IDs: seq[:k:k], Hints: hints}
	}
	return out, nil
}

// prepareOne checks one payload and the decode options for a model with identity id, and
// returns the token prefix to decode, the sampler's options and the latent shape [C, h, w] to
// decode at (latent maps an image size to it, refusing sizes the model does not run at).
func prepareOne(p *payload.Payload, id Identity, o DecodeOptions, latent LatentFunc) ([]uint32, flow.Options, []int, error) {
	fail := func(err error) ([]uint32, flow.Options, []int, error) { return nil, flow.Options{}, nil, err }
	if err := p.Validate(); err != nil {
		return fail(err)
	}
	if err := id.check(&p.Model); err != nil {
		return fail(err)
	}
	if p.NumFrames() != 1 {
		return fail(fmt.Errorf("%w: a payload of %d frames (video models)", ErrUnsupported, p.NumFrames()))
	}
	k := o.K
	if k == 0 {
		k = len(p.IDs)
	}
	if k < 1 || k > len(p.IDs) {
		return fail(fmt.Errorf("%w: k = %d, the payload has %d tokens", ErrArgument, k, len(p.IDs)))
	}
	if o.Steps < 1 {
		return fail(fmt.Errorf("%w: steps = %d, want >= 1 (0: the hinted steps)", ErrArgument, o.Steps))
	}
	h, w := p.Image.Height, p.Image.Width
	if o.Size < 0 {
		return fail(fmt.Errorf("%w: size = %d", ErrArgument, o.Size))
	} else if o.Size > 0 {
		h, w = o.Size, o.Size
	}
	shape, err := latent(h, w)
	if err != nil && o.Size == 0 {
		return fail(fmt.Errorf("%w: the payload's image size: %w", ErrUnsupported, err))
	} else if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrArgument, err))
	}
	fo := flow.Options{Steps: o.Steps, APG: o.APG, Seed: o.Seed, OnStep: o.OnStep, Shapes: [][]int{shape}}
	if o.Guidance != 1 {
		fo.Guidance = o.Guidance
	}
	if o.Noise != nil {
		fo.Noise = []tensor.Tensor{*o.Noise}
	}
	return p.IDs[:k], fo, shape, nil
}

// LatentFunc maps an image size in pixels to the latent shape [C, h, w] an executor decodes
// it at, or refuses the size. 0×0 (a payload made in memory without a size) means the
// executor's own size.
type LatentFunc func(height, width int) ([]int, error)

// prepareDecode checks payloads decoded together with the same options (their zero fields
// filled from the payloads' hints and the model's, see DecodeOptions) and returns their
// token prefixes and the sampler's options (DecodePayloads' first step). Every image starts
// from the noise it would get decoded alone (flow.Noise of o.Seed for its latent shape), so a
// batch decodes each payload as Decode would, up to an executor's batching. o.Noise, the
// initial latent of one image, needs exactly one payload. OnStep sees the steps of the whole
// batch.
func prepareDecode(ps []*payload.Payload, id Identity, hints *payload.Hints, o DecodeOptions, latent LatentFunc) ([][]uint32, flow.Options, error) {
	if len(ps) == 0 {
		return nil, flow.Options{}, fmt.Errorf("%w: no payloads", ErrArgument)
	}
	o, err := withHints(ps, o, hints)
	if err != nil {
		return nil, flow.Options{}, err
	}
	if o.Noise != nil && len(ps) > 1 {
		return nil, flow.Options{}, fmt.Errorf("%w: DecodeOptions.Noise is the initial latent of one payload, not of a batch of %d", ErrArgument, len(ps))
	}
	ids := make([][]uint32, len(ps))
	shapes := make([][]int, len(ps))
	var fo flow.Options
	for i, p := range ps {
		var err error
		if p == nil {
			err = fmt.Errorf("%w: nil payload", ErrArgument)
		} else {
			ids[i], fo, shapes[i], err = prepareOne(p, id, o, latent)
		}
		if err != nil && len(ps) > 1 {
			err = fmt.Errorf("payload %d: %w", i, err)
		}
		if err != nil {
			return nil, flow.Options{}, err
		}
	}
	if fo.Noise != nil {
		return ids, fo, nil
	}
	fo.Shapes, fo.Noise = nil, make([]tensor.Tensor, len(ps))
	noise := map[[3]int]tensor.Tensor{} // one draw per latent shape: the sampler copies it
	for i, s := range shapes {
		key := [3]int{s[0], s[1], s[2]}
		if _, ok := noise[key]; !ok {
			n, err := flow.Noise(o.Seed, fo.Stream, s)
			if err != nil {
				return nil, flow.Options{}, err
			}
			noise[key] = n[0]
		}
		fo.Noise[i] = noise[key]
	}
	return ids, fo, nil
}

// DecodePayloads is DecodeBatch for any executor of a model with identity id, decode hints
// (for DecodeOptions' zero fields; nil: none) and latent shapes given by latent: it checks the payloads (see prepareDecode), binds their token prefixes
// with bind, samples every latent in one sdk/flow run and decodes them with one call of
// vaeDecode (scaled latents [B, C, h, w] → images [B, 3, H, W]) per latent size. Package
// native's Backend uses it, so both executors decode with the same steps.
func DecodePayloads(ctx context.Context, ps []*payload.Payload, o DecodeOptions, id Identity, hints *payload.Hints, latent LatentFunc,
	bind func(ids [][]uint32) (flow.Denoiser, error),
	vaeDecode func(context.Context, tensor.Tensor) (tensor.Tensor, error)) ([]tensor.Tensor, error) {
	ids, fo, err := prepareDecode(ps, id, hints, o, latent)
	if err != nil {
		return nil, err
	}
	den, err := bind(ids)
	if err != nil {
		return nil, err
	}
	lat, err := flow.Sample(ctx, den, fo)
	if err != nil {
		return nil, err
	}
	out := make([]tensor.Tensor, len(lat))
	for _, group := range sameShape(lat) {
		part := make([]tensor.Tensor, len(group))
		for j, i := range group {
			part[j] = lat[i]
		}
		all, err := tensor.Stack(part)
		if err != nil {
			return nil, err
		}
		img, err := vaeDecode(ctx, all)
		if err != nil {
			return nil, err
		}
		for j, x := range tensor.Unstack(img) {
			out[group[j]] = x
		}
	}
	return out, nil
}

// sameShape groups the indices of ts by shape, in order of first appearance.
func sameShape(ts []tensor.Tensor) [][]int {
	var groups [][]int
next:
	for i, t := range ts {
		for g, idx := range groups {
			if tensor.SameShape(ts[idx[0]], t) {
				groups[g] = append(idx, i)
				continue next
			}
		}
		groups = append(groups, []int{i})
	}
	return groups
}
