package native

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/flextok-sdk/flextok/native/onnx"
	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/fsq"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
	"google.golang.org/protobuf/proto"
)

// Backend runs a FlexTok model in ONNX Runtime: the encoder (VAE encoder, register encoder,
// FSQ), the decoder's velocity network driven by sdk/flow's sampler (the same noise and
// guidance code as the pure-Go engine) and the VAE decoder. Its API mirrors *engine.Engine and
// its payloads are interchangeable with the engine's: the same model identity, the same
// preprocessing, the same options. A Backend is safe for concurrent use.
type Backend struct {
	id    engine.Identity
	hints *payload.Hints
	maxT  float64 // the decoder's max_timestep: Velocity's t must be in [0, maxT]
	sizes onnx.Sizes
	// sizeTag marks the export cache directory of graphs exported at another size than the
	// model's own ("" at its own size).
	sizeTag string
	// encErr and decErr say why this model cannot encode (decode); its graphs for that
	// direction are then not exported.
	encErr, decErr error
	fsq            *fsq.Quantizer
	enc            *Session
	dec            *Session
	vae            *Session
	dir            string // temporary export directory removed by Close ("" when none)
	closed         sync.Once
}

// A Backend is an executor like the Go engine: code written against engine.Executor runs on
// either.
var _ engine.Executor = (*Backend)(nil)

// Load opens a checkpoint (a model.safetensors file or a directory holding it, as
// engine.Load; its identity is the engine's), exports its three graphs and opens one ONNX
// Runtime session for each.
func Load(path string, o Options) (*Backend, error) {
	m, err := model.LoadFile(path)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return New(m, o)
}

// LoadBytes is Load for a checkpoint in memory (as engine.LoadBytes, e.g. the embedded default
// model: models.Default()).
func LoadBytes(weights, configJSON, vaeJSON []byte, o Options) (*Backend, error) {
	m, err := model.LoadBytes(weights, configJSON, vaeJSON)
	if err != nil {
		return nil, err
	}
	return New(m, o)
}

// New builds the backend from a loaded model; its identity and hints are the engine's
// (engine.NewIdentity with o.Name; o.Hints, else the model's decode_hints). The graphs are exported from m, or opened from o.ExportDir's cache; without a
// cache, graphs up to 256 MiB go to ONNX Runtime from memory and larger ones through a
// temporary directory removed by Close.
func New(m *model.Model, o Options) (*Backend, error) {
	if m == nil || m.Config == nil {
		return nil, errors.New("flextok/native: nil model")
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := Init(o); err != nil {
		return nil, err
	}
	q, err := fsq.New(m.Config.FSQ.Levels)
	if err != nil {
		return nil, fmt.Errorf("flextok/native: %w", err)
	}
	s, err := onnx.ModelSizes(m.Config, o.ImageSize)
	if err != nil {
		return nil, err
	}
	id, err := engine.NewIdentity(m, o.Name)
	if err != nil {
		return nil, err
	}
	b := &Backend{id: id, hints: o.Hints, sizes: s, fsq: q, maxT: m.Config.Decoder.MaxTimestep}
	if b.hints == nil {
		b.hints = m.Hints
	}
	if d := m.Config.Geometry().Default; d != [2]int{s.Height, s.Width} {
		b.sizeTag = fmt.Sprintf("-s%dx%d", s.Height, s.Width)
	}
	// A layout the executors do not run refuses one direction only (as engine.New).
	if err := m.Config.CanEncode(); err != nil {
		b.encErr = fmt.Errorf("%w: this model cannot encode: %w", engine.ErrUnsupported, err)
	}
	if err := m.Config.CanDecode(); err != nil {
		b.decErr = fmt.Errorf("%w: this model cannot decode: %w", engine.ErrUnsupported, err)
	}
	switch o.Parts {
	case engine.DecodeOnly:
		b.encErr = fmt.Errorf("%w: Encode: this backend was loaded with Options.Parts = DecodeOnly, without the encoder graph: load it with AllParts to encode", engine.ErrUnsupported)
	case engine.EncodeOnly:
		b.decErr = fmt.Errorf("%w: Decode: this backend was loaded with Options.Parts = EncodeOnly, without the decoder graphs: load it with AllParts to decode", engine.ErrUnsupported)
	}
	if b.encErr != nil && b.decErr != nil {
		return nil, fmt.Errorf("flextok/native: %w; %w", b.encErr, b.decErr)
	}
	graphs := []struct {
		name    string
		build   func(*model.Model, onnx.Sizes) (*pb.ModelProto, error)
		in, out []string
		dst     **Session
		skip    bool
	}{
		{"encoder", onnx.Encoder, []string{onnx.InImage}, []string{onnx.OutZ, onnx.OutIDs}, &b.enc, b.encErr != nil},
		{"decoder", onnx.Decoder, []string{onnx.InX, onnx.InT, onnx.InIDs, onnx.InK}, []string{onnx.OutV}, &b.dec, b.decErr != nil},
		{"vae_decoder", onnx.VAEDecoderGraph, []string{onnx.InLatents}, []string{onnx.OutImage}, &b.vae, b.decErr != nil},
	}
	for _, g := range graphs {
		if g.skip {
			continue
		}
		sess, err := b.open(g.name, g.build, m, g.in, g.out, o)
		if err != nil {
			b.Close()
			return nil, err
		}
		*g.dst = sess
	}
	// The serialised graphs are garbage now; hand their memory back to the OS (as engine.New
	// does) so a server's RSS shows the sessions, not the export.
	debug.FreeOSMemory()
	return b, nil
}

// open exports one graph and opens its session (one graph at a time, so that at most one
// serialised copy of the weights is alive besides the model's). With Options.ExportDir the
// graphs are kept in a subdirectory named by the weights' digest and the export's settings,
// and a later Open of the same checkpoint loads them from there instead of exporting again.
func (b *Backend) open(name string, build func(*model.Model, onnx.Sizes) (*pb.ModelProto, error), m *model.Model, in, out []string, o Options) (*Session, error) {
	s := b.sizes
	s.FP16 = o.FP16 && name == "decoder"
	cacheDir := ""
	if o.ExportDir != "" {
		cacheDir = b.cacheDir(o)
	}
	return openGraph(name, func() (*pb.ModelProto, error) { return build(m, s) }, cacheDir, &b.dir, in, out, o)
}

// openGraph opens the session of the graph name: from cacheDir/name.onnx when it is there,
// else built and, with a cacheDir, saved there first (without one: handed to ONNX Runtime from
// memory when small, else through the temporary directory *tmp, made on first use).
func openGraph(name string, build func() (*pb.ModelProto, error), cacheDir string, tmp *string, in, out []string, o Options) (*Session, error) {
	var cached string
	if cacheDir != "" {
		cached = filepath.Join(cacheDir, name+".onnx")
		if _, err := os.Stat(cached); err == nil { // Save renames the graph last: it is whole
			return NewSession(cached, in, out, o)
		}
	}
	g, err := build()
	if err != nil {
		return nil, err
	}
	if cached == "" && proto.Size(g) <= inMemoryLimit {
		if data, err := onnx.Marshal(g); err == nil {
			// The graph's own copy of the weights is garbage now: collect it before ONNX
			// Runtime makes its copy, so at most two copies are alive (peak memory).
			g = nil
			debug.FreeOSMemory()
			return NewSessionFromBytes(data, in, out, o)
		}
	}
	if cached == "" { // too large for memory, no cache: a temporary directory
		if *tmp == "" {
			if *tmp, err = os.MkdirTemp("", "flextok-onnx-*"); err != nil {
				return nil, fmt.Errorf("flextok/native: %w", err)
			}
		}
		cached = filepath.Join(*tmp, name+".onnx")
	}
	path, err := onnx.Save(g, filepath.Dir(cached), name+".onnx")
	if err != nil {
		return nil, err
	}
	g = nil
	debug.FreeOSMemory()
	return NewSession(path, in, out, o)
}

// inMemoryLimit is the largest graph handed to ONNX Runtime from memory. Larger ones go
// through a file with external data, which ONNX Runtime loads without a second in-memory
// copy: a d12 checkpoint peaked at 3.2 GB RSS from memory and at 2.1 GB through files, in
// about the same time.
var inMemoryLimit = 256 << 20 // a variable for the tests

// cacheDir is the export cache of this model and export settings under o.ExportDir.
func (b *Backend) cacheDir(o Options) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, b.id.Name)
	dir := fmt.Sprintf("%s-%x-e%s%s", name, b.id.Digest[:8], onnx.ExporterVersion, b.sizeTag)
	if o.FP16 {
		dir += "-fp16"
	}
	return filepath.Join(o.ExportDir, dir)
}

// Close releases the sessions and removes the temporary export directory. It is idempotent.
func (b *Backend) Close() error {
	var errs []error
	b.closed.Do(func() {
		for _, s := range []*Session{b.enc, b.dec, b.vae} {
			if s != nil {
				errs = append(errs, s.Close())
			}
		}
		if b.dir != "" {
			errs = append(errs, os.RemoveAll(b.dir))
		}
	})
	return errors.Join(errs...)
}

// Identity is the model identity written into every payload (the engine's for the same
// checkpoint).
func (b *Backend) Identity() payload.Model {
	id := b.id.Model
	id.Levels = append([]int(nil), id.Levels...)
	return id
}

// Accepts reports whether the backend decodes payloads made by model p (the engine's rule:
// same content digest or legacy file digest, FSQ levels and length; names are not compared).
func (b *Backend) Accepts(p *payload.Model) bool { return b.id.Accepts(p) }

// Hints are the decode hints written into payloads: Options.Hints, else the model's (nil for
// none). They fill DecodeOptions' zero fields where a payload has no hints.
func (b *Backend) Hints() *payload.Hints { return b.hints }

// DefaultDecodeOptions returns the settings a payload decodes with by default: its hints,
// else the model's, else the official README's (as engine.Engine.DefaultDecodeOptions).
func (b *Backend) DefaultDecodeOptions(p *payload.Payload) engine.DecodeOptions {
	return engine.HintedDecodeOptions(p, b.hints)
}

// ImageSize is the image size (height, width) the graphs were exported for
// (Options.ImageSize), the only size this Backend encodes and decodes at.
func (b *Backend) ImageSize() (int, int) { return b.sizes.Height, b.sizes.Width }

// size is the Backend's EncodeImages size function: only the exported size.
func (b *Backend) size(side int) (int, int, error) {
	h, w := b.ImageSize()
	if side != 0 && (side != h || side != w) {
		return 0, 0, fmt.Errorf("flextok/native: image size %d, but the ONNX graphs were exported for %dx%d (native.Options.ImageSize, --size)", side, h, w)
	}
	return h, w, nil
}

// latent is the Backend's engine.LatentFunc: only the exported size.
func (b *Backend) latent(height, width int) ([]int, error) {
	s := b.sizes
	if height == 0 && width == 0 {
		height, width = s.Height, s.Width
	}
	if height != s.Height || width != s.Width {
		return nil, fmt.Errorf("flextok/native: image size %dx%d, but the ONNX graphs were exported for %dx%d (native.Options.ImageSize, --size)", height, width, s.Height, s.Width)
	}
	return []int{s.C, s.H, s.W}, nil
}

// MaxTokens is the number of tokens per image.
func (b *Backend) MaxTokens() int { return b.sizes.R }

// Provider is the execution provider the sessions run on.
func (b *Backend) Provider() Provider {
	if b.dec == nil {
		return b.enc.Provider()
	}
	return b.dec.Provider()
}

// EncodeTensor tokenizes preprocessed images [B, 3, H, W] in [-1, 1]: MaxTokens ids each.
func (b *Backend) EncodeTensor(ctx context.Context, images tensor.Tensor) ([][]uint32, error) {
	if b.encErr != nil {
		return nil, b.encErr
	}
	s := b.sizes
	if err := images.Check(); err != nil || len(images.Shape) != 4 || images.Shape[0] < 1 ||
		images.Shape[1] != 3 || images.Shape[2] != s.Height || images.Shape[3] != s.Width {
		return nil, fmt.Errorf("%w: images of shape %v, want [B, 3, %d, %d]", engine.ErrArgument, images.Shape, s.Height, s.Width)
	}
	n := images.Shape[0]
	out, err := b.enc.Run(ctx, []Tensor{{Shape: []int64{int64(n), 3, int64(s.Height), int64(s.Width)}, F32: images.Data}})
	if err != nil {
		return nil, err
	}
	raw := out[1].I64
	ids := make([][]uint32, n)
	for i := range ids {
		ids[i] = make([]uint32, s.R)
		for j, v := range raw[i*s.R : (i+1)*s.R] {
			if v < 0 || v >= int64(b.fsq.CodebookSize()) {
				return nil, fmt.Errorf("flextok/native: encoder gave id %d outside the codebook (image %d, token %d)", v, i, j)
			}
			ids[i][j] = uint32(v)
		}
	}
	return ids, nil
}

// Encode turns an image into a token payload, as engine.Engine.Encode.
func (b *Backend) Encode(ctx context.Context, img image.Image, o engine.EncodeOptions) (*payload.Payload, error) {
	p, err := b.EncodeBatch(ctx, []image.Image{img}, o)
	if err != nil {
		return nil, err
	}
	return p[0], nil
}

// EncodeBatch encodes several images in one forward pass (engine.EncodeImages with this
// backend's encoder); the payloads are those Encode gives one by one.
func (b *Backend) EncodeBatch(ctx context.Context, imgs []image.Image, o engine.EncodeOptions) ([]*payload.Payload, error) {
	if b.encErr != nil {
		return nil, b.encErr
	}
	return engine.EncodeImages(ctx, imgs, o, b.id.Model, b.hints, b.size, b.EncodeTensor)
}

// Decode turns a payload (or its first K tokens) into an image tensor [3, H, W], unclamped,
// exactly as engine.Engine.Decode but with the networks in ONNX Runtime.
func (b *Backend) Decode(ctx context.Context, p *payload.Payload, o engine.DecodeOptions) (tensor.Tensor, error) {
	imgs, err := b.DecodeBatch(ctx, []*payload.Payload{p}, o)
	if err != nil {
		return tensor.Tensor{}, err
	}
	return imgs[0], nil
}

// DecodeBatch decodes several payloads with the same options in one sampler run, as
// engine.Engine.DecodeBatch: every velocity evaluation is one ONNX Runtime run over the
// conditional and unconditional items of all images, and the VAE decodes them in one run.
// Each image is Decode's for its payload up to float rounding (ONNX Runtime's kernels may
// order sums differently for another batch size).
func (b *Backend) DecodeBatch(ctx context.Context, ps []*payload.Payload, o engine.DecodeOptions) ([]tensor.Tensor, error) {
	if b.decErr != nil {
		return nil, b.decErr
	}
	return engine.DecodePayloads(ctx, ps, o, b.id, b.hints, b.latent,
		func(ids [][]uint32) (flow.Denoiser, error) { return b.Bind(ids, nil) }, b.DecodeLatents)
}

// DecodeImage is Decode followed by the conversion to 8-bit RGB.
func (b *Backend) DecodeImage(ctx context.Context, p *payload.Payload, o engine.DecodeOptions) (*image.NRGBA, error) {
	x, err := b.Decode(ctx, p, o)
	if err != nil {
		return nil, err
	}
	return ftimage.FromTensor(x)
}

// DecodeLatents runs the VAE decoder on scaled latents [B, C, h, w]: images [B, 3, H, W].
func (b *Backend) DecodeLatents(ctx context.Context, latents tensor.Tensor) (tensor.Tensor, error) {
	if b.decErr != nil {
		return tensor.Tensor{}, b.decErr
	}
	s := b.sizes
	if err := latents.Check(); err != nil || len(latents.Shape) != 4 || latents.Shape[0] < 1 ||
		latents.Shape[1] != s.C || latents.Shape[2] != s.H || latents.Shape[3] != s.W {
		return tensor.Tensor{}, fmt.Errorf("%w: latents of shape %v, want [B, %d, %d, %d]", engine.ErrArgument, latents.Shape, s.C, s.H, s.W)
	}
	n := latents.Shape[0]
	out, err := b.vae.Run(ctx, []Tensor{{Shape: []int64{int64(n), int64(s.C), int64(s.H), int64(s.W)}, F32: latents.Data}})
	if err != nil {
		return tensor.Tensor{}, err
	}
	return tensor.Tensor{Shape: []int{n, 3, s.Height, s.Width}, Data: out[0].F32}, nil
}

// Conditioned is the backend's decoder bound to the token sequences of a batch of images: a
// flow.Denoiser (as engine.Conditioned) whose every Velocity call is one ONNX Runtime run over
// all its items, conditional and unconditional together. The feed is built and the output
// scattered back by engine.GraphDenoiser, the code the browser's onnxruntime-web executor
// shares.
type Conditioned struct {
	*engine.GraphDenoiser
}

var _ flow.Denoiser = (*Conditioned)(nil)

// Bind prepares token sequences for sampling, with the rules of engine.Decoder.Bind: at most R
// ids each, inside the codebook; k nil means every sequence's length, otherwise k[i] in [1, R].
func (b *Backend) Bind(ids [][]uint32, k []int) (*Conditioned, error) {
	if b.decErr != nil {
		return nil, b.decErr
	}
	g, err := engine.BindGraph("flextok/native", b.graphSizes(), b.fsq.CodebookSize(), b.maxT, ids, k, b.velocity)
	if err != nil {
		return nil, err
	}
	return &Conditioned{g}, nil
}

// graphSizes are the sizes of the exported graphs, as the shared graph code takes them.
func (b *Backend) graphSizes() engine.GraphSizes {
	s := b.sizes
	return engine.GraphSizes{Height: s.Height, Width: s.Width, C: s.C, H: s.H, W: s.W, R: s.R}
}

// velocity is one run of the decoder session over a feed.
func (b *Backend) velocity(ctx context.Context, f *engine.VelocityFeed) ([]float32, error) {
	s := b.sizes
	n := int64(f.N)
	out, err := b.dec.Run(ctx, []Tensor{
		{Shape: []int64{n, int64(s.C), int64(s.H), int64(s.W)}, F32: f.X},
		{Shape: []int64{n}, F32: f.T},
		{Shape: []int64{n, int64(s.R)}, I64: f.IDs},
		{Shape: []int64{n}, I64: f.K},
	})
	if err != nil {
		return nil, err
	}
	return out[0].F32, nil
}
