package onnx

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"github.com/flextok-sdk/flextok/sdk/model"
)

// Manifest describes an exported model directory (manifest.json beside the graphs), so that a
// program in any language can run the graphs without reading the Go code.
type Manifest struct {
	Format    string            `json:"format"` // "flextok-onnx"
	Exporter  string            `json:"exporter_version"`
	Opset     int               `json:"opset"`
	Model     string            `json:"model"`        // the checkpoint's name
	Digest    string            `json:"model_sha256"` // of its safetensors file
	Levels    []int             `json:"fsq_levels"`   // FSQ levels: the codebook
	Sizes     Sizes             `json:"sizes"`        // fixed sizes of the graphs
	Graphs    map[string]string `json:"graphs"`       // role → file
	Signature map[string]string `json:"signatures"`   // role → inputs and outputs, in words
}

// ErrExists is returned by ExportAll when an output file exists and overwrite is not set.
var ErrExists = errors.New("flextok/onnx: output exists")

// ExportAll writes the encoder, decoder and VAE decoder graphs of m into dir (each with its
// external data file) and manifest.json, for square images of size pixels (0: the model's
// own size). Existing files of those names are refused unless overwrite is set.
func ExportAll(m *model.Model, name string, digest [32]byte, size int, dir string, overwrite bool) (*Manifest, error) {
	if err := checkModel(m); err != nil {
		return nil, err
	}
	s, err := ModelSizes(m.Config, size)
	if err != nil {
		return nil, err
	}
	graphs := []struct {
		role  string
		build func(*model.Model, Sizes) (*pb.ModelProto, error)
	}{{"encoder", Encoder}, {"decoder", Decoder}, {"vae_decoder", VAEDecoderGraph}}
	man := &Manifest{
		Format: "flextok-onnx", Exporter: ExporterVersion, Opset: Opset,
		Model: name, Digest: hex.EncodeToString(digest[:]), Levels: append([]int(nil), m.Config.FSQ.Levels...),
		Sizes: s, Graphs: map[string]string{}, Signature: map[string]string{},
	}
	if !overwrite {
		for _, g := range graphs {
			for _, f := range []string{g.role + ".onnx", g.role + ".onnx.data", "manifest.json"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					return nil, fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, f))
				}
			}
		}
	}
	for _, g := range graphs {
		p, err := g.build(m, s)
		if err != nil {
			return nil, err
		}
		man.Signature[g.role] = p.GetGraph().GetDocString()
		if _, err := Save(p, dir, g.role+".onnx"); err != nil {
			return nil, err
		}
		man.Graphs[g.role] = g.role + ".onnx"
	}
	var data bytes.Buffer
	enc := json.NewEncoder(&data)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(man); err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, ".manifest.json.tmp")
	if err := os.WriteFile(tmp, data.Bytes(), 0o666); err != nil { // less the umask
		return nil, fmt.Errorf("flextok/onnx: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "manifest.json")); err != nil {
		return nil, fmt.Errorf("flextok/onnx: %w", err)
	}
	return man, nil
}
