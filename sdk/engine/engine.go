package engine

import (
	"context"
	"errors"
	"fmt"
	"image"
	"runtime/debug"

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
	// ErrGraphMismatch: an exported graph run by a Graphs (GraphExecutor, GraphDenoiser)
	// gave outputs of another shape than the model's: a graph of another model or export.
	ErrGraphMismatch = errors.New("flextok/engine: the graph does not fit the model")
)

// Engine is a loaded FlexTok model: it encodes images to token payloads and decodes payloads,
// or any prefix of their tokens, back to images. It is safe for concurrent use.
type Engine struct {
	id    Identity
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
// makes, comes from the checkpoint's content (model.Model.Identity), never from its path.
func Load(path string, o Options) (*Engine, error) {
	m, err := model.LoadFile(path)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return New(m, o)
}

// LoadBytes builds the engine from checkpoint bytes held in memory (an embedded model, or weights
// received by a WebAssembly module), with optional config.json and VAE config.json contents.
func LoadBytes(weights, configJSON, vaeJSON []byte, o Options) (*Engine, error) {
	m, err := model.LoadBytes(weights, configJSON, vaeJSON)
	if err != nil {
		return nil, err
	}
	return New(m, o)
}

// New builds the engine from a loaded model. All weights it uses (every weight, or one half's
// with Options.Parts) are read here, so m may be closed afterwards. The payloads it makes carry the model's identity (NewIdentity with o.Name) and
// hints (o.Hints, else the model's decode_hints).
func New(m *model.Model, o Options) (*Engine, error) {
	if m == nil || m.Config == nil {
		return nil, fmt.Errorf("%w: nil model", ErrArgument)
	}
	if err := o.Precision.check(); err != nil {
		return nil, err
	}
	if err := o.Parts.check(); err != nil {
		return nil, err
	}
	id, err := NewIdentity(m, o.Name)
	if err != nil {
		return nil, err
	}
	cfg := m.Config
	q, err := fsq.New(cfg.FSQ.Levels)
	if err != nil {
		return nil, err
	}
	e := &Engine{id: id, cfg: cfg, fsq: q, hints: o.Hints}
	if e.hints == nil {
		e.hints = m.Hints
	}
	if e.vae, err = NewVAE(m, o); err != nil {
		return nil, err
	}
	// A layout the executors do not run refuses one direction only: a model that cannot
	// decode still encodes, and the other way round. Options.Parts leaves a half out.
	switch {
	case !o.Parts.encodes():
		e.encErr = partsError("Encode", o.Parts)
	default:
		if e.enc, err = NewEncoder(m, o); errors.Is(err, model.ErrUnsupported) {
			e.encErr = fmt.Errorf("%w: this model cannot encode: %w", ErrUnsupported, err)
		} else if err != nil {
			return nil, err
		}
	}
	switch {
	case !o.Parts.decodes():
		e.decErr = partsError("Decode", o.Parts)
	default:
		if e.dec, err = NewDecoder(m, o); errors.Is(err, model.ErrUnsupported) {
			e.decErr = fmt.Errorf("%w: this model cannot decode: %w", ErrUnsupported, err)
		} else if err != nil {
			return nil, err
		}
	}
	if e.encErr != nil && e.decErr != nil {
		return nil, fmt.Errorf("%w; %w", e.encErr, e.decErr)
	}
	e.geo = cfg.Geometry()
	if err := e.geo.Check(e.geo.Default[0], e.geo.Default[1]); err != nil {
		return nil, fmt.Errorf("flextok/engine: %w", err)
	}
	// Loading allocated and dropped per-tensor buffers; hand that memory back to the OS now
	// rather than whenever the runtime gets to it, so a server's RSS reflects the model.
	debug.FreeOSMemory()
	return e, nil
}

// Identity is the model identity written into every payload this engine makes; Decode refuses
// payloads with another.
func (e *Engine) Identity() payload.Model {
	id := e.id.Model
	id.Levels = append([]int(nil), id.Levels...)
	return id
}

// Hints are the decode hints Encode writes into payloads: Options.Hints, else the model's
// (its config's decode_hints); nil if neither gives any.
func (e *Engine) Hints() *payload.Hints { return e.hints }

// ImageSize is the size in pixels (height, width) the model encodes and decodes at unless
// EncodeOptions.Size or DecodeOptions.Size say otherwise: the size its config states, else the
// size of its positional tables (see model.Geometry).
func (e *Engine) ImageSize() (int, int) { return e.geo.Default[0], e.geo.Default[1] }

// Geometry says which image sizes the model runs at.
func (e *Engine) Geometry() model.Geometry { return e.geo }

// MaxTokens is the longest token sequence of the model (its number of registers).
func (e *Engine) MaxTokens() int { return e.id.MaxTokens }

// Close does nothing: an Engine holds only Go memory, which the garbage collector frees. It
// is there so that an Engine is an Executor.
func (e *Engine) Close() error { return nil }

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

// DecodeOptions control Decode. Zero Steps and Guidance take the hinted values: the payload's
// hints, else the model's (its config's decode_hints), else the official README's (20 steps,
// guidance 7.5 with APG), so DecodeOptions{} and DecodeOptions{K: 8} decode as the model
// suggests. Payloads decoded together (DecodeBatch) must then hint the same values. A zero Seed
// is seed 0; DefaultDecodeOptions also takes a payload's seed hint.
type DecodeOptions struct {
	K int // decode the first K tokens of the payload (0: all it has)
	// Size is the side in pixels of the square image to decode: 0 for the size the payload
	// records (the size it was encoded at), else any size the model runs at.
	Size     int
	Steps    int     // Euler steps (0: hinted), >= 0
	Guidance float64 // classifier-free guidance scale (0: hinted, with the hinted APG); 1 turns guidance off
	APG      bool    // adaptive projected guidance instead of plain CFG
	Seed     uint64  // noise seed
	// Noise, if set, is the initial latent [C, h, w] (for conformance with other executors);
	// Seed is then unused.
	Noise *tensor.Tensor
	// OnStep, if set, receives every Euler step, with a preview of the clean latent.
	OnStep func(flow.Step) error
}

// Official decode settings (the official README): the last of the defaults.
const (
	OfficialSteps    = 20
	OfficialGuidance = 7.5
	OfficialAPG      = true
)

// DefaultDecodeOptions returns the official README's settings (20 steps, guidance 7.5 with
// APG, seed 0), overridden by the payload's hints where it has them. Engine.DefaultDecodeOptions
// also applies the model's hints.
func DefaultDecodeOptions(p *payload.Payload) DecodeOptions {
	return HintedDecodeOptions(p, nil)
}

// DefaultDecodeOptions returns the settings a payload decodes with by default: its hints,
// else the model's, else the official README's. DecodeOptions{} gives the same.
func (e *Engine) DefaultDecodeOptions(p *payload.Payload) DecodeOptions {
	return HintedDecodeOptions(p, e.hints)
}

// HintedDecodeOptions returns the settings p decodes with by default on a model whose decode
// hints are model (nil: none): the payload's hints, else the model's, else the official
// README's (for executors other than Engine, such as package native's).
func HintedDecodeOptions(p *payload.Payload, model *payload.Hints) DecodeOptions {
	o := DecodeOptions{Steps: OfficialSteps, Guidance: OfficialGuidance, APG: OfficialAPG}
	for _, h := range []*payload.Hints{model, p.Hints} {
		if h == nil {
			continue
		}
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

// withHints fills the zero Steps and Guidance of o from the hints of the payloads (which must
// agree on them) and of the model. A zero Seed stays seed 0: an explicit value is never
// replaced (DefaultDecodeOptions is the way to take a payload's seed hint).
func withHints(ps []*payload.Payload, o DecodeOptions, model *payload.Hints) (DecodeOptions, error) {
	if o.Steps != 0 && o.Guidance != 0 {
		return o, nil
	}
	var first DecodeOptions
	firstAt := -1
	for i, p := range ps {
		if p == nil {
			continue // prepareDecode reports it
		}
		d := HintedDecodeOptions(p, model)
		if firstAt < 0 {
			first, firstAt = d, i
			continue
		}
		if (o.Steps == 0 && d.Steps != first.Steps) || (o.Guidance == 0 && (d.Guidance != first.Guidance || d.APG != first.APG)) {
			return o, fmt.Errorf("%w: payloads %d and %d hint different steps or guidance: set DecodeOptions.Steps and Guidance", ErrArgument, firstAt, i)
		}
	}
	if firstAt < 0 {
		return o, nil
	}
	if o.Steps == 0 {
		o.Steps = first.Steps
	}
	if o.Guidance == 0 {
		o.Guidance, o.APG = first.Guidance, o.APG || first.APG
	}
	return o, nil
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

// DecodeBatch decodes several payloads with the same options in one sampler run: every
// velocity evaluation runs the conditional and unconditional items of all images as one batch.
// Each image equals Decode's for its payload, bit for bit (items never mix). Images are
// [3, H, W], unclamped; payloads of different sizes may be mixed.
func (e *Engine) DecodeBatch(ctx context.Context, ps []*payload.Payload, o DecodeOptions) ([]tensor.Tensor, error) {
	if e.decErr != nil {
		return nil, e.decErr
	}
	return DecodePayloads(ctx, ps, o, e.id, e.hints, e.latent,
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

// DecodeImage is Decode followed by the official demo's conversion to 8-bit RGB.
func (e *Engine) DecodeImage(ctx context.Context, p *payload.Payload, o DecodeOptions) (*image.NRGBA, error) {
	x, err := e.Decode(ctx, p, o)
	if err != nil {
		return nil, err
	}
	return ftimage.FromTensor(x)
}
