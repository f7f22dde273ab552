package engine

import (
	"context"
	"fmt"
	"image"
	"runtime"

	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// EncodeBatch is Encode for several images in one forward pass: each image is preprocessed as
// Encode does (concurrently), then one EncodeTensor call tokenizes the whole batch. The
// payloads are identical, bit for bit, to calling Encode on each image in turn; batching only
// amortises the per-call work of the encoder's matrix products.
//
// An image that cannot be preprocessed fails the whole call with an error naming its index
// (0-based) and wrapping the cause; callers that want the others encoded anyway retry without
// it. An empty batch returns no payloads and no error.
func (e *Engine) EncodeBatch(ctx context.Context, imgs []image.Image, o EncodeOptions) ([]*payload.Payload, error) {
	if e.encErr != nil {
		return nil, e.encErr
	}
	return EncodeImages(ctx, imgs, o, e.id.Model, e.hints, e.geo.Resolve, e.EncodeTensor)
}

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
