package model

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
)

const (
	c1Dir    = "../../conformance/testdata/official/c1_w32_zero_e2"
	c1Digest = "7fadc08edeee59facde495ef7bfdf19c42d3145f7a9f7363ef1f267ea8ff4a8a"
)

// c1Files returns the c1 checkpoint's model.safetensors, config.json and vae/config.json.
func c1Files(t *testing.T) (weights, config, vae []byte) {
	t.Helper()
	var err error
	if weights, err = os.ReadFile(filepath.Join(c1Dir, "model.safetensors")); err != nil {
		t.Skip("no official testdata:", err)
	}
	if config, err = os.ReadFile(filepath.Join(c1Dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	if vae, err = os.ReadFile(filepath.Join(c1Dir, "vae", "config.json")); err != nil {
		t.Fatal(err)
	}
	return weights, config, vae
}

// rewrite writes the tensors of weights again (the Writer's own layout) with the metadata
// entries in the order perm gives (nil: none); edit, if set, may change tensor bytes.
func rewrite(t *testing.T, weights []byte, perm func([]safetensors.MetaEntry) []safetensors.MetaEntry, edit func(name string, raw []byte)) []byte {
	t.Helper()
	f, err := safetensors.OpenBytes(weights)
	if err != nil {
		t.Fatal(err)
	}
	var w safetensors.Writer
	names := f.Names()
	for i := len(names) - 1; i >= 0; i-- { // reversed: another data layout too
		info, _ := f.Info(names[i])
		raw, err := f.ReadRaw(names[i])
		if err != nil {
			t.Fatal(err)
		}
		raw = append([]byte(nil), raw...)
		if edit != nil {
			edit(names[i], raw)
		}
		if err := w.AddRaw(names[i], info.DType, info.Shape, raw); err != nil {
			t.Fatal(err)
		}
	}
	if perm != nil {
		for _, e := range perm(append([]safetensors.MetaEntry(nil), f.Metadata()...)) {
			if err := w.SetMetadata(e.Key, e.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
	return w.Bytes()
}

func reversed(m []safetensors.MetaEntry) []safetensors.MetaEntry {
	for i, j := 0, len(m)-1; i < j; i, j = i+1, j-1 {
		m[i], m[j] = m[j], m[i]
	}
	return m
}

func identity(t *testing.T, weights, config, vae []byte) Identity {
	t.Helper()
	m, err := LoadBytes(weights, config, vae)
	if err != nil {
		t.Fatal(err)
	}
	id, err := m.Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The identity depends on what the checkpoint holds, never on where it is stored: a copy in a
// directory of another name (a Hugging Face cache names folders by commit hash) is the same
// model.
func TestIdentityIgnoresThePath(t *testing.T) {
	weights, config, vae := c1Files(t)
	dir := filepath.Join(t.TempDir(), "3f1c2e9a0b7d")
	if err := os.MkdirAll(filepath.Join(dir, "vae"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"model.safetensors": weights, "config.json": config, "vae/config.json": vae} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var ids []Identity
	for _, p := range []string{c1Dir, dir, filepath.Join(dir, "model.safetensors")} {
		m, err := LoadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		id, err := m.Identity()
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if ids[0] != ids[1] || ids[0] != ids[2] {
		t.Fatalf("identities differ by path: %+v", ids)
	}
	if want := identity(t, weights, config, vae); want != ids[0] {
		t.Fatalf("LoadBytes identity %+v, LoadFile %+v", want, ids[0])
	}
	// Pins the definition (docs/payload.md): the TypeScript tests expect the same value.
	if got := hex.EncodeToString(ids[0].Digest[:]); got != c1Digest {
		t.Errorf("c1 content digest %s, want %s", got, c1Digest)
	}
	if !strings.HasPrefix(ids[0].Name, "flextok-") || ids[0].Name != "flextok-"+hex.EncodeToString(ids[0].Digest[:6]) {
		t.Errorf("a model without a name is named %q, want flextok- and its digest", ids[0].Name)
	}
}

// The official save_safetensors writes the metadata in a random order: the file bytes change
// on every run, the content digest must not. Neither may the data layout matter, nor whether
// the config travels in the metadata or in config.json.
func TestIdentityStableForEqualContent(t *testing.T) {
	weights, config, vae := c1Files(t)
	base := identity(t, weights, config, vae)
	shuffled := rewrite(t, weights, reversed, nil)
	if bytes.Equal(shuffled, weights) {
		t.Fatal("the rewrite changed nothing")
	}
	got := identity(t, shuffled, config, vae)
	if got.Digest != base.Digest {
		t.Errorf("reordered metadata and layout changed the digest: %x, want %x", got.Digest, base.Digest)
	}
	if got.FileDigest == base.FileDigest {
		t.Error("the file digest ignored a change of the file bytes")
	}
	noMeta := rewrite(t, weights, nil, nil)
	m, err := LoadBytes(noMeta, config, vae)
	if err != nil {
		t.Fatal(err)
	}
	if m.ConfigSource != "config.json" {
		t.Fatalf("config from %s, want config.json", m.ConfigSource)
	}
	if id, _ := m.Identity(); id.Digest != base.Digest {
		t.Errorf("the config from config.json gives digest %x, from the metadata %x", id.Digest, base.Digest)
	}
}

// What defines the model changes the digest: a weight, a config value, the VAE config.
func TestIdentityFollowsContent(t *testing.T) {
	weights, config, vae := c1Files(t)
	base := identity(t, weights, config, vae)
	flipped := rewrite(t, weights, func(m []safetensors.MetaEntry) []safetensors.MetaEntry { return m }, func(name string, raw []byte) {
		if name == "decoder.module_dict.dec_from_latents.proj.bias" {
			raw[0] ^= 1
		}
	})
	if id := identity(t, flipped, config, vae); id.Digest == base.Digest {
		t.Error("a changed weight kept the digest")
	}
	noMeta := rewrite(t, weights, nil, nil)
	edited := bytes.Replace(config, []byte(`"max_timestep": 1000.0`), []byte(`"max_timestep": 999.0`), 1)
	if bytes.Equal(edited, config) {
		t.Fatal("config.json has no max_timestep 1000.0")
	}
	if a, b := identity(t, noMeta, config, vae), identity(t, noMeta, edited, vae); a.Digest == b.Digest {
		t.Error("a changed config value kept the digest")
	}
	vae2 := bytes.Replace(vae, []byte(`"scaling_factor": 0.18215`), []byte(`"scaling_factor": 0.5`), 1)
	if bytes.Equal(vae2, vae) {
		t.Fatal("vae/config.json has no scaling_factor 0.18215")
	}
	if id := identity(t, weights, config, vae2); id.Digest == base.Digest {
		t.Error("a changed VAE config kept the digest")
	}
}

// The name and the decode hints come from the config; they describe the model and do not
// change its digest. A config.json beside a checkpoint whose metadata holds the config can
// give them.
func TestNameAndHintsFromConfig(t *testing.T) {
	weights, config, vae := c1Files(t)
	base := identity(t, weights, config, vae)
	named := bytes.Replace(config, []byte("{"), []byte(`{"name": "tiny-c1", "decode_hints": {"steps": 10, "guidance": 1.5, "apg": false},`), 1)
	for _, w := range [][]byte{weights, rewrite(t, weights, nil, nil)} {
		m, err := LoadBytes(w, named, vae)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := m.Identity()
		if id.Name != "tiny-c1" || m.Name != "tiny-c1" {
			t.Errorf("name %q (model %q), want tiny-c1", id.Name, m.Name)
		}
		if id.Digest != base.Digest {
			t.Errorf("naming the model changed its digest")
		}
		h := m.Hints
		if h == nil || h.Steps != 10 || h.Guidance == nil || *h.Guidance != 1.5 || h.APG {
			t.Errorf("hints %+v", h)
		}
	}
	// In the metadata, as Python literals.
	withMeta := rewrite(t, weights, func(m []safetensors.MetaEntry) []safetensors.MetaEntry {
		return append(m, safetensors.MetaEntry{Key: "name", Value: "tiny-c1"}, safetensors.MetaEntry{Key: "decode_hints", Value: "{'steps': 8, 'apg': True, 'guidance': 3}"})
	}, nil)
	m, err := LoadBytes(withMeta, nil, vae)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := m.Identity(); id.Name != "tiny-c1" || id.Digest != base.Digest {
		t.Errorf("metadata name: %+v", id)
	}
	if h := m.Hints; h == nil || h.Steps != 8 || *h.Guidance != 3 || !h.APG {
		t.Errorf("metadata hints %+v", h)
	}
	for _, bad := range []string{
		`"name": 3,`, `"name": "",`, `"decode_hints": {"stepz": 3},`, `"decode_hints": {"steps": 0},`,
		`"decode_hints": {"guidance": "high"},`, `"decode_hints": {"guidance": 0},`, `"decode_hints": {"guidance": -1},`, `"decode_hints": {},`, `"decode_hints": [10],`,
	} {
		c := bytes.Replace(config, []byte("{"), []byte("{"+bad), 1)
		_, err := LoadBytes(rewrite(t, weights, nil, nil), c, vae)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", bad, err)
		}
	}
}
