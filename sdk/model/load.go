package model

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flextok-sdk/flextok/sdk/internal/pyliteral"
	"github.com/flextok-sdk/flextok/sdk/internal/safetensors"
)

// WeightReport is the result of [Config.CheckWeights].
type WeightReport struct {
	// Key maps each canonical name to the key in the file.
	Key map[string]string
	// Unexpected lists file keys the config does not use (the official
	// loader tolerates them only with strict=False).
	Unexpected []string
	// Params counts parameters per part ("vae", "encoder", "decoder").
	Params map[string]int64
	// DTypes counts tensors per dtype.
	DTypes map[safetensors.DType]int
}

// baseVAEHint explains a VAE weight that does not fit: without hf_hub_path the config asks
// for the official base VAE layout, which other VAEs do not have.
func (c *Config) baseVAEHint(part string) string {
	if part != "vae" || c.VAE.HFHubPath != "" {
		return ""
	}
	return " (the config's vae has no hf_hub_path, so the official base VAE layout is expected: " +
		"block_out_channels [128, 256, 512, 512], 2 layers per block, 32 norm groups; for another VAE " +
		"set hf_hub_path and put its diffusers config.json there, beside model.safetensors)"
}

// CheckWeights checks that every tensor the config implies is present with
// its shape.
func (c *Config) CheckWeights(tensors []safetensors.TensorInfo) (*WeightReport, error) {
	r := &WeightReport{Key: map[string]string{}, Params: map[string]int64{}, DTypes: map[safetensors.DType]int{}}
	byName := map[string]safetensors.TensorInfo{}
	for _, t := range tensors {
		cn := CanonicalName(t.Name)
		if prev, dup := r.Key[cn]; dup {
			return nil, fmt.Errorf("%w: %q and %q both map to %q", ErrWeights, prev, t.Name, cn)
		}
		r.Key[cn] = t.Name
		byName[cn] = t
		r.DTypes[t.DType]++
	}
	used := map[string]bool{}
	for _, want := range c.ExpectedTensors() {
		t, ok := byName[want.Name]
		if !ok {
			return nil, fmt.Errorf("%w: missing %s, expected shape %v%s", ErrWeights, want.Name, want.Shape, c.baseVAEHint(want.Part))
		}
		if !t.DType.IsFloat() {
			return nil, fmt.Errorf("%w: %s has dtype %s, want F32, F16 or BF16", ErrWeights, t.Name, t.DType)
		}
		if !equalShape(t.Shape, want.Shape) {
			return nil, fmt.Errorf("%w: %s has shape %v, expected %v%s", ErrWeights, t.Name, t.Shape, want.Shape, c.baseVAEHint(want.Part))
		}
		used[want.Name] = true
		r.Params[want.Part] += t.NumElements()
	}
	for cn, key := range r.Key {
		if !used[cn] {
			r.Unexpected = append(r.Unexpected, key)
		}
	}
	sort.Strings(r.Unexpected)
	return r, nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Model is a loaded checkpoint: the config and the lazily read weights.
type Model struct {
	Config  *Config
	Weights *safetensors.File
	Report  *WeightReport
	// ConfigSource is "metadata" or "config.json".
	ConfigSource string
}

// Tensor reads the canonical weight name as float32.
func (m *Model) Tensor(name string) ([]float32, error) {
	key, ok := m.Report.Key[name]
	if !ok {
		return nil, fmt.Errorf("%w: missing %s", ErrWeights, name)
	}
	return m.Weights.ReadFloat32(key)
}

// TensorInto reads the tensor with canonical name into dst, which must have exactly its number
// of elements: for callers that copy the weights elsewhere at once (packing), so that loading
// needs no second full copy of them.
func (m *Model) TensorInto(name string, dst []float32) error {
	key, ok := m.Report.Key[name]
	if !ok {
		return fmt.Errorf("%w: missing %s", ErrWeights, name)
	}
	return m.Weights.ReadFloat32Into(key, dst)
}

// Load reads the config from the file's metadata, or from configJSON when
// the metadata holds none (Hugging Face repositories), and checks the
// weights. vaeJSON is the VAE's diffusers config.json if the config names
// one (may be nil).
func Load(f *safetensors.File, configJSON, vaeJSON []byte) (*Model, error) {
	m := &Model{Weights: f}
	var err error
	if len(f.Metadata()) > 0 && hasConfigKeys(f) {
		m.ConfigSource = "metadata"
		m.Config, err = ParseTree(TreeFromMetadata(f.Metadata()), vaeJSON)
	} else if configJSON != nil {
		m.ConfigSource = "config.json"
		m.Config, err = ParseConfigJSON(configJSON, vaeJSON)
	} else {
		err = fmt.Errorf("%w: the checkpoint has no config in its metadata and no config.json was given", ErrConfig)
	}
	if err == nil && m.ConfigSource == "metadata" && configJSON != nil && m.Config.ImageSize == [2]int{} {
		// The SDK's own top-level keys may be in config.json only: the official
		// load_model_from_safetensors passes every metadata key to FlexTok and refuses
		// unknown ones, so a checkpoint that the official code loads cannot have them there.
		var t pyliteral.Value
		if t, err = parseJSONTree(configJSON); err == nil {
			err = m.Config.parseImageSize(node{v: t})
		}
		if err != nil {
			err = fmt.Errorf("config.json: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	if m.Report, err = m.Config.CheckWeights(f.Tensors()); err != nil {
		return nil, err
	}
	return m, nil
}

func hasConfigKeys(f *safetensors.File) bool {
	_, a := f.MetadataValue("encoder")
	_, b := f.MetadataValue("decoder")
	return a && b
}

// LoadBytes opens a checkpoint held in memory: model.safetensors bytes (kept, not copied: do
// not modify them) with optional config.json and VAE config.json contents, as Load.
func LoadBytes(weights, configJSON, vaeJSON []byte) (*Model, error) {
	f, err := safetensors.OpenBytes(weights)
	if err != nil {
		return nil, err
	}
	return Load(f, configJSON, vaeJSON)
}

// LoadFile opens a checkpoint: a model.safetensors path, or a directory
// holding model.safetensors and optionally config.json. When the config names
// a VAE by hf_hub_path, its diffusers config.json must be at
// <dir>/<hf_hub_path>/config.json or <dir>/vae/config.json; without it the
// model is refused (its layout cannot be read from the weights).
// Close the returned model's Weights when done.
func LoadFile(path string) (*Model, error) {
	dir, file := path, filepath.Join(path, "model.safetensors")
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		dir, file = filepath.Dir(path), path
	}
	f, err := safetensors.OpenFile(file)
	if err != nil {
		return nil, err
	}
	cfgJSON, err := readOptional(filepath.Join(dir, "config.json"))
	if err != nil {
		f.Close()
		return nil, err
	}
	// A first pass finds hf_hub_path. The VAE config is read from dir/<hf_hub_path>/config.json
	// (a relative path inside dir only), else from dir/vae/config.json.
	var vaeJSON []byte
	if hub := hubPath(f, cfgJSON); hub != "" {
		places := []string{"vae"}
		if !filepath.IsAbs(hub) && !strings.Contains(hub, "..") {
			places = []string{hub, "vae"}
		}
		for _, p := range places {
			if vaeJSON, err = readOptional(filepath.Join(dir, p, "config.json")); err != nil {
				f.Close()
				return nil, err
			}
			if vaeJSON != nil {
				break
			}
		}
	}
	m, err := Load(f, cfgJSON, vaeJSON)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func readOptional(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("flextok/model: %w", err)
	}
	return b, nil
}

func hubPath(f *safetensors.File, cfgJSON []byte) string {
	var tree node
	if hasConfigKeys(f) {
		tree = node{v: TreeFromMetadata(f.Metadata())}
	} else if cfgJSON != nil {
		t, err := parseJSONTree(cfgJSON)
		if err != nil {
			return ""
		}
		tree = node{v: t}
	}
	vae, err := tree.get("vae")
	if err != nil {
		return ""
	}
	s, _ := vae.optStr("hf_hub_path", "")
	return s
}
