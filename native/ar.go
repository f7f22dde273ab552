package native

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"

	"github.com/flextok-sdk/flextok/native/onnx"
	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// ARBackend runs an AR model (sdk/ar) in ONNX Runtime: a prefill graph and a step graph with
// past keys and values as inputs and outputs, both recorded from sdk/ar's Forward (the Go
// executor's definition). It is an ar.Executor: pass it as ar.Options.Executor and sdk/ar's
// Generate (the one sampler) runs on it. The embedding lookups stay in Go (the model's
// tables), so the graphs hold the blocks and the head only. An ARBackend is safe for
// concurrent use (each stepper holds its own KV cache).
type ARBackend struct {
	m         *ar.Model
	pre, step *Session
	digest    [32]byte
	dir       string // temporary export directory removed by Close ("" when none)
	closed    sync.Once
}

var _ ar.Executor = (*ARBackend)(nil)

// NewAR exports m's two graphs and opens their sessions with o's provider (CUDA as encode and
// decode choose it). With o.ExportDir the graphs are cached under
// <ExportDir>/ar-<name>-<digest>-e<exporter version>/{ar_prefill,ar_step}.onnx, the digest
// being the SHA-256 of config.json and the float32 weights; a later NewAR of the same model
// opens them without exporting. o.FP16 and o.ImageSize do not apply.
func NewAR(m *ar.Model, o Options) (*ARBackend, error) {
	if m == nil || m.Cfg == nil || m.W == nil {
		return nil, errors.New("flextok/native: nil AR model")
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := Init(o); err != nil {
		return nil, err
	}
	b := &ARBackend{m: m}
	if err := b.hash(); err != nil {
		return nil, err
	}
	cacheDir := ""
	if o.ExportDir != "" {
		cacheDir = b.CacheDir(o.ExportDir)
	}
	var err error
	if b.pre, err = openGraph("ar_prefill", func() (*pb.ModelProto, error) { return onnx.ARPrefill(m) }, cacheDir, &b.dir, onnx.ARInputs(m, false), onnx.AROutputs(m), o); err != nil {
		b.Close()
		return nil, err
	}
	if b.step, err = openGraph("ar_step", func() (*pb.ModelProto, error) { return onnx.ARStep(m) }, cacheDir, &b.dir, onnx.ARInputs(m, true), onnx.AROutputs(m), o); err != nil {
		b.Close()
		return nil, err
	}
	debug.FreeOSMemory()
	return b, nil
}

func (b *ARBackend) hash() error {
	cj, err := b.m.Cfg.ConfigJSON()
	if err != nil {
		return err
	}
	h := sha256.New()
	h.Write(cj)
	w := b.m.W
	for _, t := range [][]float32{w.Tok, w.Cls, w.Norm, w.Output} {
		h.Write(tensor.Bytes(t))
	}
	for _, l := range w.Layers {
		for _, t := range [][]float32{l.AttnNorm, l.WQKV, l.WO, l.FFNNorm, l.W1, l.W3, l.W2} {
			h.Write(tensor.Bytes(t))
		}
	}
	copy(b.digest[:], h.Sum(nil))
	return nil
}

// CacheDir is the directory under exportDir that holds this model's graphs.
func (b *ARBackend) CacheDir(exportDir string) string {
	return filepath.Join(exportDir, fmt.Sprintf("ar-%x-e%s", b.digest[:8], onnx.ExporterVersion))
}

// Model is the AR model the graphs were exported from.
func (b *ARBackend) Model() *ar.Model { return b.m }

// Provider is the execution provider the sessions run on.
func (b *ARBackend) Provider() Provider { return b.step.Provider() }

// Close releases the sessions and removes the temporary export directory. It is idempotent.
func (b *ARBackend) Close() error {
	var errs []error
	b.closed.Do(func() {
		for _, s := range []*Session{b.pre, b.step} {
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

// NewStepper implements ar.Executor: a stepper for n sequences whose KV cache (the presents
// of the last call) lives in Go memory between calls.
func (b *ARBackend) NewStepper(ctx context.Context, n int) (ar.Stepper, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: a stepper of %d sequences", ar.ErrArgument, n)
	}
	d := b.m.Cfg.Dim
	return &arStepper{b: b, ctx: ctx, n: n, x: make([]float32, n*d), pos: make([]float32, n)}, nil
}

type arStepper struct {
	b      *ARBackend
	ctx    context.Context
	n, t   int // t: positions run so far
	x, pos []float32
	past   []Tensor
}

func (s *arStepper) run(sess *Session, table []float32, rows []int) ([]float32, error) {
	c := s.b.m.Cfg
	d := c.Dim
	if len(rows) != s.n {
		return nil, fmt.Errorf("%w: %d rows for a stepper of %d sequences", ar.ErrArgument, len(rows), s.n)
	}
	if s.t > c.BlockSize {
		return nil, fmt.Errorf("%w: step %d past block size %d", ar.ErrArgument, s.t, c.BlockSize)
	}
	for i, id := range rows {
		copy(s.x[i*d:(i+1)*d], table[id*d:(id+1)*d])
		s.pos[i] = float32(s.t - 1)
	}
	n := int64(s.n)
	in := append([]Tensor{{Shape: []int64{n, 1, int64(d)}, F32: s.x}, {Shape: []int64{n, 1, 1}, F32: s.pos}}, s.past...)
	out, err := sess.Run(s.ctx, in)
	if err != nil {
		return nil, err
	}
	s.past = out[1:]
	s.t++
	return out[0].F32, nil
}

// Prefill runs the class position (classes may include the null class).
func (s *arStepper) Prefill(classes []int) ([]float32, error) {
	if s.t != 0 {
		return nil, fmt.Errorf("%w: prefill of a stepper already used", ar.ErrArgument)
	}
	for _, k := range classes {
		if k < 0 || k >= s.b.m.Cfg.ClassRows() {
			return nil, fmt.Errorf("%w: class %d outside 0..%d", ar.ErrArgument, k, s.b.m.Cfg.ClassRows()-1)
		}
	}
	return s.run(s.b.pre, s.b.m.W.Cls, classes)
}

// Step feeds one token per sequence.
func (s *arStepper) Step(ids []uint32) ([]float32, error) {
	if s.t == 0 {
		return nil, fmt.Errorf("%w: step before prefill", ar.ErrArgument)
	}
	rows := make([]int, len(ids))
	for i, id := range ids {
		if int(id) >= s.b.m.Cfg.VocabSize {
			return nil, fmt.Errorf("%w: id %d outside the vocabulary of %d", ar.ErrArgument, id, s.b.m.Cfg.VocabSize)
		}
		rows[i] = int(id)
	}
	return s.run(s.b.step, s.b.m.W.Tok, rows)
}
