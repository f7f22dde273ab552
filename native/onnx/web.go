package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/webpkg"
)

// WebOptions configure ExportWeb.
type WebOptions struct {
	Size      int   // square image side in pixels the graphs are exported for; 0: the model's
	FP16      bool  // also export decoder_fp16 (the decoder with float16 Linear layers)
	ChunkSize int64 // bytes per chunk; 0: webpkg.DefaultChunkSize
	Overwrite bool  // replace files of the package's names that exist in the directory
}

// ExportWeb writes the browser model package of m into dir (docs/web-package.md): the decoder
// and VAE decoder graphs (and with o.FP16 the fp16 decoder) as Save writes them, each file
// split into chunks of o.ChunkSize bytes, and manifest.json, written last. The files are made
// in a temporary directory inside dir and renamed into place, so an interrupted export leaves
// no partial chunk under a package name. Without o.Overwrite, any existing file of a name the
// package uses is refused with ErrExists before anything is written; with it those files are
// replaced. Other files in dir are never touched.
func ExportWeb(m *model.Model, dir string, o WebOptions) (*webpkg.Manifest, error) {
	if err := checkModel(m); err != nil {
		return nil, err
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = webpkg.DefaultChunkSize
	}
	if o.ChunkSize < webpkg.MinChunkSize {
		return nil, fmt.Errorf("flextok/onnx: chunk size %d: want at least %d bytes", o.ChunkSize, webpkg.MinChunkSize)
	}
	s, err := ModelSizes(m.Config, o.Size)
	if err != nil {
		return nil, err
	}
	id, err := engine.NewIdentity(m, "")
	if err != nil {
		return nil, err
	}
	type graph struct {
		role, precision string
		fp16            bool
		build           func(*model.Model, Sizes) (*pb.ModelProto, error)
	}
	graphs := []graph{{webpkg.RoleDecoder, webpkg.FP32, false, Decoder}}
	if o.FP16 {
		graphs = append(graphs, graph{webpkg.RoleDecoderFP16, webpkg.FP16, true, Decoder})
	}
	graphs = append(graphs, graph{webpkg.RoleVAEDecoder, webpkg.FP32, false, VAEDecoderGraph})
	man := &webpkg.Manifest{
		Format: webpkg.Format, Version: webpkg.Version, Exporter: ExporterVersion, Opset: Opset,
		Model: webpkg.ModelFrom(id.Model), DecodeHints: webpkg.HintsFrom(m.Hints),
		Sizes: webpkg.Sizes{Height: s.Height, Width: s.Width, C: s.C, H: s.H, W: s.W, R: s.R, D: s.D, FP16: o.FP16},
		// Graphs and Files are filled below.
		Graphs: map[string]webpkg.Graph{}, Files: map[string]webpkg.File{},
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("flextok/onnx: %w", err)
	}
	if !o.Overwrite {
		// The names are known before any graph is built, except how many chunks a data file
		// has: refuse any file of a graph's names, its chunks' prefix or the manifest.
		names := []string{webpkg.ManifestName}
		for _, g := range graphs {
			names = append(names, g.role+".onnx", g.role+".onnx.data", webpkg.ChunkName(g.role+".onnx", 0), webpkg.ChunkName(g.role+".onnx.data", 0))
		}
		for _, n := range names {
			if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
				return nil, fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, n))
			}
		}
	}
	stage, err := os.MkdirTemp(dir, ".flextok-web-")
	if err != nil {
		return nil, fmt.Errorf("flextok/onnx: %w", err)
	}
	defer os.RemoveAll(stage) // only the staging directory, which is ours
	var out []string          // staged chunk names, renamed into dir at the end
	for _, g := range graphs {
		sg := s
		sg.FP16 = g.fp16
		p, err := g.build(m, sg)
		if err != nil {
			return nil, err
		}
		name := g.role + ".onnx"
		if _, err := Save(p, stage, name); err != nil {
			return nil, err
		}
		for _, f := range []string{name, name + ".data"} {
			chunks, desc, err := splitStaged(stage, f, o.ChunkSize)
			if err != nil {
				return nil, err
			}
			man.Files[f] = desc
			out = append(out, chunks...)
		}
		man.Graphs[g.role] = webpkg.Graph{Graph: name, Data: name + ".data", Precision: g.precision}
	}
	data, err := man.Marshal()
	if err != nil {
		return nil, fmt.Errorf("flextok/onnx: the web manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(stage, webpkg.ManifestName), data, 0o666); err != nil { // less the umask
		return nil, fmt.Errorf("flextok/onnx: %w", err)
	}
	for _, c := range append(out, webpkg.ManifestName) { // the manifest last
		if err := os.Rename(filepath.Join(stage, c), filepath.Join(dir, c)); err != nil {
			return nil, fmt.Errorf("flextok/onnx: %w", err)
		}
	}
	return man, nil
}

// splitStaged cuts the staged file f into chunks beside it (a file of one chunk stays as it
// is) and returns the chunks' names and the file's description.
func splitStaged(stage, f string, chunkSize int64) ([]string, webpkg.File, error) {
	path := filepath.Join(stage, f)
	r, err := os.Open(path)
	if err != nil {
		return nil, webpkg.File{}, fmt.Errorf("flextok/onnx: %w", err)
	}
	defer r.Close()
	st, err := r.Stat()
	if err != nil {
		return nil, webpkg.File{}, fmt.Errorf("flextok/onnx: %w", err)
	}
	var names []string
	desc, err := webpkg.Split(f, r, st.Size(), chunkSize, func(c string, b []byte) error {
		names = append(names, c)
		if c == f {
			return nil // one chunk: the staged file itself
		}
		if err := os.WriteFile(filepath.Join(stage, c), b, 0o666); err != nil {
			return fmt.Errorf("flextok/onnx: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, webpkg.File{}, err
	}
	if len(desc.Chunks) > 1 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, webpkg.File{}, fmt.Errorf("flextok/onnx: %w", err)
		}
	}
	return names, desc, nil
}
