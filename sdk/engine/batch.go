package engine

import (
	"context"
	"image"

	"github.com/flextok-sdk/flextok/sdk/payload"
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
