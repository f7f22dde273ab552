package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/fsq"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Errors of the public API; each returned error wraps one of them or a payload/model error.
var (
	ErrModelMismatch = payload.ErrModelMismatch
	ErrArgument      = errors.New("flextok/engine: invalid argument")
	ErrUnsupported   = errors.New("flextok/engine: unsupported")
)

// Engine is a loaded FlexTok model: it encodes images to token payloads and decodes payloads,
// or any prefix of their tokens, back to images. It is safe for concurrent use.
type Engine struct {
	id    payload.Model
	cfg   *model.Config
	vae   *VAE
	enc   *Encoder
	dec   *Decoder
	fsq   *fsq.Quantizer
	geo   model.Geometry // image sizes the model runs at
	hints *payload.Hints
	// encErr and decErr say why the executors cannot encode (decode) with this model; the
	// engine then has no encoder (decoder) and refuses that direction only.
	encErr, decErr error
}

// Load opens a checkpoint (a model.safetensors file or a directory holding it, as
// model.LoadFile) and builds the engine. The model's identity, carried in every payload it
// makes, is the directory's (or file's) base name and the SHA-256 of the safetensors file.
func Load(path string, o Options) (*Engine, error) {
	m, name, digest, err := Checkpoint(path)
	if err != nil {
		return nil, err
	}
	defer m.Weights.Close()
	return New(m, name, digest, o)
}

// Checkpoint opens the checkpoint at path as Load does and returns the model with the name
// and digest of its identity, so that other executors (package native) write the same
// payloads. Close m.Weights when done.
func Checkpoint(path string) (m *model.Model, name string, digest [32]byte, err error) {
	m, err = model.LoadFile(path)
	if err != nil {
		return nil, "", digest, err
	}
	file, name := path, filepath.Base(path)
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		file = filepath.Join(path, "model.safetensors")
	} else {
		name = strings.TrimSuffix(filepath.Base(filepath.Dir(path)), "/")
	}
	if digest, err = fileDigest(file); err != nil {
		m.Weights.Close()
		return nil, "", digest, err
	}
	return m, name, digest, nil
}

// LoadBytes builds the engine from checkpoint bytes held in memory (an embedded model, or weights
// received by a WebAssembly module), with optional config.json and VAE config.json contents.
func LoadBytes(name string, weights, configJSON, vaeJSON []byte, o Options) (*Engine, error) {
	m, err := model.LoadBytes(weights, configJSON, vaeJSON)
	if err != nil {
		return nil, err
	}
	return New(m, name, sha256.Sum256(weights), o)
}

func fileDigest(path string) ([32]byte, error) {
	var d [32]byte
	f, err := os.Open(path)
	if err != nil {
		return d, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return d, fmt.Errorf("flextok/engine: hash %s: %w", path, err)
	}
	copy(d[:], h.Sum(nil))
	return d, nil
}

// New builds the engine from a loaded model; name and digest form its identity. All weights
// are read here, so m.Weights may be closed afterwards.
func New(m *model.Model, name string, digest [32]byte, o Options) (*Engine, error) {
	cfg := m.Config
	q, err := fsq.New(cfg.FSQ.Levels)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, fsq: q, hints: o.Hints}
	if e.vae, err = NewVAE(m, o); err != nil {
		return nil, err
	}
	// A layout the executors do not run refuses one direction only: a model that cannot
	// decode still encodes, and the other way round.
	if e.enc, err = NewEncoder(m, o); errors.Is(err, model.ErrUnsupported) {
		e.encErr = fmt.Errorf("%w: this model cannot encode: %w", ErrUnsupported, err)
	} else if err != nil {
		return nil, err
	}
	if e.dec, err = NewDecoder(m, o); errors.Is(err, model.ErrUnsupported) {
		e.decErr = fmt.Errorf("%w: this model cannot decode: %w", ErrUnsupported, err)
	} else if err != nil {
		return nil, err
	}
	if e.encErr != nil && e.decErr != nil {
		return nil, fmt.Errorf("%w; %w", e.encErr, e.decErr)
	}
	e.geo = cfg.Geometry()
	if err := e.geo.Check(e.geo.Default[0], e.geo.Default[1]); err != nil {
		return nil, fmt.Errorf("flextok/engine: %w", err)
	}
	e.id = Identity(cfg, name, digest)
	// Loading allocated and dropped per-tensor buffers; hand that memory back to the OS now
	// rather than whenever the runtime gets to it, so a server's RSS reflects the model.
	debug.FreeOSMemory()
	return e, nil
}

// Identity is the identity of a model with config cfg, name and weights digest: what every
// payload made with it carries.
func Identity(cfg *model.Config, name string, digest [32]byte) payload.Model {
	return payload.Model{Name: name, Digest: digest, Levels: append([]int(nil), cfg.FSQ.Levels...), MaxTokens: cfg.Encoder.RegistersNMax}
}

// Identity is the model identity written into every payload this engine makes; Decode refuses
// payloads with another.
func (e *Engine) Identity() payload.Model {
	id := e.id
	id.Levels = append([]int(nil), id.Levels...)
	return id
}

// Hints are the decode hints Encode writes into payloads (Options.Hints; nil if none).
func (e *Engine) Hints() *payload.Hints { return e.hints }

// ImageSize is the size in pixels (height, width) the model encodes and decodes at unless
// EncodeOptions.Size or DecodeOptions.Size say otherwise: the size its config states, else the
// size of its positional tables (see model.Geometry).
func (e *Engine) ImageSize() (int, int) { return e.geo.Default[0], e.geo.Default[1] }

// Geometry says which image sizes the model runs at.
func (e *Engine) Geometry() model.Geometry { return e.geo }

// MaxTokens is the longest token sequence of the model (its number of registers).
func (e *Engine) MaxTokens() int { return e.id.MaxTokens }

// Config is the model's architecture.
func (e *Engine) Config() *model.Config { return e.cfg }

// EncodeOptions control Encode.
type EncodeOptions struct {
	K      int    // keep the first K tokens (0: all of them, MaxTokens)
	Filter string // resize filter, ftimage.FilterBilinear (default) or ftimage.FilterCatmullRom
	// Size is the side in pixels of the square the image is resized and cropped to, and so
	// the size the payload records and decodes at: 0 for the model's size (ImageSize), else
	// any size the model runs at (Geometry().Check).
	Size int
}

// Encode turns an image into a token payload: resize (shorter side to the model size, as the
// official demo) and centre-crop, VAE encode (posterior mean), encoder, FSQ. The payload
// records the preprocessing.
func (e *Engine) Encode(ctx context.Context, img image.Image, o EncodeOptions) (*payload.Payload, error) {
	ps, err := e.EncodeBatch(ctx, []image.Image{img}, o)
	if err != nil {
		return nil, err
	}
	return ps[0], nil
}

// EncodeTensor tokenizes a batch of preprocessed images [B, 3, H, W] in [-1, 1] (the official
// tokenize): every image gets MaxTokens ids.
func (e *Engine) EncodeTensor(ctx context.Context, images tensor.Tensor) ([][]uint32, error) {
	if e.encErr != nil {
		return nil, e.encErr
	}
	lat, err := e.vae.Encode(ctx, images)
	if err != nil {
		return nil, err
	}
	return e.enc.Tokens(ctx, lat)
}

// DecodeOptions control Decode. Use DefaultDecodeOptions for sensible values.
type DecodeOptions struct {
	K int // decode the first K tokens of the payload (0: all it has)
	// Size is the side in pixels of the square image to decode: 0 for the size the payload
	// records (the size it was encoded at), else any size the model runs at.
	Size     int
	Steps    int     // Euler steps, >= 1
	Guidance float64 // classifier-free guidance scale; 1 turns guidance off
	APG      bool    // adaptive projected guidance instead of plain CFG
	Seed     uint64  // noise seed (the noise comes from sdk/flow's generator)
	// Noise, if set, is the initial latent [C, h, w] (for conformance with other executors);
	// Seed is then unused.
	Noise *tensor.Tensor
	// OnStep, if set, receives every Euler step, with a preview of the clean latent.
	OnStep func(flow.Step) error
}

// DefaultDecodeOptions returns the official README's settings (20 steps, guidance 7.5 with
// APG, seed 0), overridden by the payload's hints where it has them.
func DefaultDecodeOptions(p *payload.Payload) DecodeOptions {
	o := DecodeOptions{Steps: 20, Guidance: 7.5, APG: true}
	if h := p.Hints; h != nil {
		if h.Steps > 0 {
			o.Steps = h.Steps
		}
		if h.Guidance != nil {
			o.Guidance = float64(*h.Guidance)
			o.APG = h.APG
		}
		if h.Seed != nil {
			o.Seed = *h.Seed
		}
	}
	return o
}

// Decode turns a payload (or its first K tokens) into an image tensor [3, H, W] in roughly
// [-1, 1], unclamped: the rectified-flow sampler from noise with the decoder conditioned on
// the tokens, then the VAE decoder. It refuses payloads made by another model.
func (e *Engine) Decode(ctx context.Context, p *payload.Payload, o DecodeOptions) (tensor.Tensor, error) {
	imgs, err := e.DecodeBatch(ctx, []*payload.Payload{p}, o)
	if err != nil {
		return tensor.Tensor{}, err
	}
	return imgs[0], nil
}

// prepareOne checks one payload and the decode options for a model with identity id, and
// returns the token prefix to decode, the sampler's options and the latent shape [C, h, w] to
// decode at (latent maps an image size to it, refusing sizes the model does not run at).
func prepareOne(p *payload.Payload, id payload.Model, o DecodeOptions, latent LatentFunc) ([]uint32, flow.Options, []int, error) {
	fail := func(err error) ([]uint32, flow.Options, []int, error) { return nil, flow.Options{}, nil, err }
	if err := p.Validate(); err != nil {
		return fail(err)
	}
	if !p.Model.Equal(&id) {
		return fail(fmt.Errorf("flextok/engine: payload of model %q (%x…), this engine is %q (%x…): %w",
			p.Model.Name, p.Model.Digest[:4], id.Name, id.Digest[:4], ErrModelMismatch))
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
		return fail(fmt.Errorf("%w: steps = %d, want >= 1", ErrArgument, o.Steps))
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
		if o.Guidance == 0 {
			fo.GuidanceFunc = func(float64) float64 { return 0 }
		}
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

// prepareDecode checks payloads decoded together with the same options and returns their
// token prefixes and the sampler's options (DecodePayloads' first step). Every image starts
// from the noise it would get decoded alone (flow.Noise of o.Seed for its latent shape), so a
// batch decodes each payload as Decode would, up to an executor's batching. o.Noise, the
// initial latent of one image, needs exactly one payload. OnStep sees the steps of the whole
// batch.
func prepareDecode(ps []*payload.Payload, id payload.Model, o DecodeOptions, latent LatentFunc) ([][]uint32, flow.Options, error) {
	if len(ps) == 0 {
		return nil, flow.Options{}, fmt.Errorf("%w: no payloads", ErrArgument)
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

// DecodeBatch decodes several payloads with the same options in one sampler run: every
// velocity evaluation runs the conditional and unconditional items of all images as one batch.
// Each image equals Decode's for its payload, bit for bit (items never mix). Images are
// [3, H, W], unclamped; payloads of different sizes may be mixed.
func (e *Engine) DecodeBatch(ctx context.Context, ps []*payload.Payload, o DecodeOptions) ([]tensor.Tensor, error) {
	if e.decErr != nil {
		return nil, e.decErr
	}
	return DecodePayloads(ctx, ps, o, e.id, e.latent,
		func(ids [][]uint32) (flow.Denoiser, error) { return e.dec.Bind(ids, nil) }, e.vae.Decode)
}

// latent is the engine's LatentFunc: any size the model runs at.
func (e *Engine) latent(height, width int) ([]int, error) {
	if height == 0 && width == 0 {
		height, width = e.ImageSize()
	}
	if err := e.geo.Check(height, width); err != nil {
		return nil, err
	}
	return e.geo.Latent(height, width), nil
}

// DecodePayloads is DecodeBatch for any executor of a model with identity id whose latent
// shapes latent gives: it checks the payloads (see prepareDecode), binds their token prefixes
// with bind, samples every latent in one sdk/flow run and decodes them with one call of
// vaeDecode (scaled latents [B, C, h, w] → images [B, 3, H, W]) per latent size. Package
// native's Backend uses it, so both executors decode with the same steps.
func DecodePayloads(ctx context.Context, ps []*payload.Payload, o DecodeOptions, id payload.Model, latent LatentFunc,
	bind func(ids [][]uint32) (flow.Denoiser, error),
	vaeDecode func(context.Context, tensor.Tensor) (tensor.Tensor, error)) ([]tensor.Tensor, error) {
	ids, fo, err := prepareDecode(ps, id, o, latent)
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

// DecodeImage is Decode followed by the official demo's conversion to 8-bit RGB.
func (e *Engine) DecodeImage(ctx context.Context, p *payload.Payload, o DecodeOptions) (*image.NRGBA, error) {
	x, err := e.Decode(ctx, p, o)
	if err != nil {
		return nil, err
	}
	return ftimage.FromTensor(x)
}
