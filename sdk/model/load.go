package model

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/internal/pyliteral"
	"github.com/flextok-sdk/flextok/sdk/payload"
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
		if !slices.Equal(t.Shape, want.Shape) {
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

// Model is a loaded checkpoint: the config and the lazily read weights.
type Model struct {
	Config  *Config
	Weights *safetensors.File
	Report  *WeightReport
	// ConfigSource is "metadata" or "config.json".
	ConfigSource string
	// Name and Hints are the config's top-level "name" and "decode_hints" (NameKey, HintsKey;
	// "" and nil when absent), read from the config the architecture came from or else from a
	// config.json given beside it. Identity gives the name payloads carry.
	Name  string
	Hints *payload.Hints

	tree    pyliteral.Value  // the config tree the architecture was read from
	vaeTree *pyliteral.Value // the VAE's config.json when the architecture used it
	idMu    sync.Mutex
	id      *Identity
}

// Close releases the weights' file (a no-op for a checkpoint in memory). Everything built from
// the model (an engine) keeps working.
func (m *Model) Close() error { return m.Weights.Close() }

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

// load reads the config from the file's metadata, or from configJSON when
// the metadata holds none (Hugging Face repositories), and checks the
// weights. vaeJSON is the VAE's diffusers config.json if the config names
// one (may be nil).
func load(f *safetensors.File, configJSON, vaeJSON []byte) (*Model, error) {
	m := &Model{Weights: f}
	var err error
	var jsonTree *pyliteral.Value
	if configJSON != nil {
		t, err := parseJSONTree(configJSON)
		if err != nil {
			return nil, err
		}
		jsonTree = &t
	}
	switch {
	case len(f.Metadata()) > 0 && hasConfigKeys(f):
		m.ConfigSource = "metadata"
		m.tree = TreeFromMetadata(f.Metadata())
	case jsonTree != nil:
		m.ConfigSource = "config.json"
		m.tree = *jsonTree
	default:
		return nil, fmt.Errorf("%w: the checkpoint has no config in its metadata and no config.json was given", ErrConfig)
	}
	if m.Config, err = ParseTree(m.tree, vaeJSON); err != nil {
		return nil, err
	}
	if m.Config.VAE.HFHubPath != "" && vaeJSON != nil {
		t, err := parseJSONTree(vaeJSON)
		if err != nil {
			return nil, err
		}
		m.vaeTree = &t
	}
	// The card keys come from the config the architecture came from, or else from a
	// config.json beside a checkpoint whose metadata holds the config.
	card := m.tree
	if _, has := card.Get(NameKey); !has && jsonTree != nil {
		if _, hints := card.Get(HintsKey); !hints {
			card = *jsonTree
		}
	}
	if m.ConfigSource == "metadata" && jsonTree != nil && m.Config.ImageSize == [2]int{} {
		// The SDK's own top-level keys (image_size, name, decode_hints) may be in config.json
		// only: the official load_model_from_safetensors passes every metadata key to FlexTok
		// and refuses unknown ones, so a checkpoint that the official code loads cannot have
		// them in its metadata.
		if err = m.Config.parseImageSize(node{v: *jsonTree}); err != nil {
			return nil, fmt.Errorf("config.json: %w", err)
		}
	}
	if m.Name, m.Hints, err = readCard(card); err != nil {
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
// not modify them) with optional config.json and VAE config.json contents. The config is read
// from the file's metadata, or from config.json when the metadata holds none (Hugging Face
// repositories); vaeJSON is the VAE's diffusers config.json when the config names one.
func LoadBytes(weights, configJSON, vaeJSON []byte) (*Model, error) {
	f, err := safetensors.OpenBytes(weights)
	if err != nil {
		return nil, err
	}
	return load(f, configJSON, vaeJSON)
}

// LoadReaderAt opens a checkpoint whose model.safetensors of the given size r reads (read
// lazily: r must stay readable while the model is used), with optional config.json and VAE
// config.json contents, as LoadBytes.
func LoadReaderAt(r io.ReaderAt, size int64, configJSON, vaeJSON []byte) (*Model, error) {
	f, err := safetensors.Open(r, size)
	if err != nil {
		return nil, err
	}
	return load(f, configJSON, vaeJSON)
}

// LoadFile opens a checkpoint: a model.safetensors path, or a directory
// holding model.safetensors and optionally config.json. The VAE's
// config.json is read from <dir>/<hf_hub_path>/config.json when present.
// Close the model when done.
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
	m, err := load(f, cfgJSON, vaeJSON)
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
