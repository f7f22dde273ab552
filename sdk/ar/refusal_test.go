package ar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
	"github.com/flextok-sdk/flextok/sdk/nn"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

func tinyConfig(t testing.TB) map[string]any {
	b, err := os.ReadFile(filepath.Join(tinyDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBadRequests(t *testing.T) {
	g := tinyGen(t, nn.Options{})
	ok := DefaultSampling()
	cases := []struct {
		name string
		req  func(*Request)
		want string
	}{
		{"unknown class", func(r *Request) { r.Classes = []int{5} }, "class 5 outside 0..4"},
		{"negative class", func(r *Request) { r.Classes = []int{-1} }, "class -1"},
		{"no classes", func(r *Request) { r.Classes = nil }, "no classes"},
		{"k 0", func(r *Request) { r.K = 0 }, "k = 0 outside 1..16"},
		{"k too large", func(r *Request) { r.K = 17 }, "k = 17 outside 1..16"},
		{"temperature < 0", func(r *Request) { r.Temperature = -0.5 }, "temperature -0.5"},
		{"top-p 0", func(r *Request) { r.TopP = 0 }, "top-p 0"},
		{"top-p > 1", func(r *Request) { r.TopP = 1.5 }, "top-p 1.5"},
		{"top-k < 0", func(r *Request) { r.TopK = -1 }, "top-k -1"},
		{"cfg NaN", func(r *Request) { r.CFG = nanF() }, "cfg scale"},
		{"guided < 0", func(r *Request) { r.GuidedTokens = -1 }, "guided tokens"},
		{"callback error", func(r *Request) {
			r.OnToken = func(int, []uint32) error { return errors.New("client went away") }
		}, "client went away"},
	}
	for _, c := range cases {
		req := Request{Classes: []int{1}, K: 4, Sampling: ok}
		c.req(&req)
		_, err := g.Generate(context.Background(), req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %q", c.name, err, c.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.Generate(ctx, Request{Classes: []int{1}, K: 4, Sampling: ok}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func nanF() float64 { var z float64; return z / z }

func TestTokenizerMismatch(t *testing.T) {
	m, err := Load(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	good := fictional()
	if err := m.CheckTokenizer(good.id); err != nil {
		t.Fatal(err)
	}
	def := good
	def.id.Digest[0] ^= 1
	lv := good
	lv.id.Levels = []int{8, 8, 8, 5, 5, 5}
	reg := good
	reg.id.MaxTokens = 32
	for _, c := range []struct {
		tok  fakeTok
		want string
	}{{def, "AR model trained for tokenizer sha256:7afed3a0"}, {lv, "FSQ levels"}, {reg, "registers"}} {
		_, err := NewGenerator(m, Options{Tokenizer: c.tok})
		if !errors.Is(err, ErrTokenizer) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mismatch: %v, want %q", err, c.want)
		}
	}
	// The default tokenizer's identity (docs/ar-checkpoint.md) is refused too.
	_, err = NewGenerator(m, Options{Tokenizer: fakeTok{payload.Model{Name: "flextok-sdk-shapes32", Levels: []int{8, 8, 8, 5, 5, 5}, MaxTokens: 32}}})
	if !errors.Is(err, ErrTokenizer) {
		t.Errorf("default tokenizer: %v", err)
	}
}

func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"format", func(m map[string]any) { m["format"] = "gpt" }, `config.json.format = "gpt": want "flextok-ar"`},
		{"version", func(m map[string]any) { m["format_version"] = 2 }, "format_version = 2"},
		{"positions", func(m map[string]any) { m["positions"] = "learned" }, `positions = "learned"`},
		{"unknown key", func(m map[string]any) { m["dropout"] = 0.1 }, `unknown key "dropout"`},
		{"missing", func(m map[string]any) { delete(m, "dim") }, `key "dim" missing`},
		{"float int", func(m map[string]any) { m["dim"] = 32.5 }, "dim = 32.5: want an integer"},
		{"bool int", func(m map[string]any) { m["n_layer"] = true }, "n_layer = true"},
		{"kv heads", func(m map[string]any) { m["n_kv_head"] = 3 }, "n_kv_head 3 does not divide n_head 4"},
		{"kv > heads", func(m map[string]any) { m["n_kv_head"] = 8 }, "n_kv_head 8 > n_head 4"},
		{"odd head", func(m map[string]any) { m["n_head"] = 32; m["n_kv_head"] = 32 }, "even head size"},
		{"ffn", func(m map[string]any) { m["ffn_hidden"] = 64 }, "ffn_hidden = 64: LlamaGen's rule gives 96"},
		{"eps", func(m map[string]any) { m["norm_eps"] = 0 }, "norm_eps 0"},
		{"dropout", func(m map[string]any) { m["class_dropout"] = 1.5 }, "class_dropout = 1.5"},
		{"classes", func(m map[string]any) { m["classes"] = []string{"a", "a", "b", "c", "d"} }, "classes[1]"},
		{"vocab", func(m map[string]any) { m["vocab_size"] = 999 }, "vocab_size 999 ≠ tokenizer.codebook_size 1000"},
		{"block", func(m map[string]any) { m["block_size"] = 32 }, "block_size 32 ≠ tokenizer.n_registers 16"},
		{"digest", func(m map[string]any) { m["tokenizer"].(map[string]any)["digest"] = "sha256:ABC" }, "tokenizer.digest"},
		{"levels", func(m map[string]any) { m["tokenizer"].(map[string]any)["fsq_levels"] = []int{8, 5, 5, 4} }, "codebook_size 1000 ≠ the product of fsq_levels 800"},
		{"no tokenizer", func(m map[string]any) { delete(m, "tokenizer") }, `key "tokenizer" missing`},
		{"hints", func(m map[string]any) { m["sampling_hints"] = map[string]any{"cfg": 2} }, `unknown key "cfg"`},
		{"huge", func(m map[string]any) {
			m["dim"], m["n_layer"], m["ffn_hidden"], m["multiple_of"] = 65536, 1024, 174762, 1
		}, "over this reader's cap"},
	}
	for _, c := range cases {
		m := tinyConfig(t)
		c.edit(m)
		b, _ := json.Marshal(m)
		_, err := ParseConfig(b)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	for _, bad := range []string{"", "[]", "{", `{"format": "flextok-ar"} x`, `{"a":1,"a":1}`} {
		if _, err := ParseConfig([]byte(bad)); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestBadWeights: missing, extra, misshapen, wrong-dtype and non-finite tensors and a
// truncated file are refused with errors naming the tensor.
func TestBadWeights(t *testing.T) {
	cj, err := os.ReadFile(filepath.Join(tinyDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile(filepath.Join(tinyDir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBytes(cj, st); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.OpenBytes(st)
	if err != nil {
		t.Fatal(err)
	}
	var addExtra bool
	rewrite := func(edit func(name string, info safetensors.TensorInfo, raw []byte) (string, safetensors.DType, []int, []byte, bool)) []byte {
		var w safetensors.Writer
		for _, info := range f.Tensors() {
			raw, _ := f.ReadRaw(info.Name)
			n, dt, sh, r, keep := edit(info.Name, info, raw)
			if keep {
				if err := w.AddRaw(n, dt, sh, r); err != nil {
					t.Fatal(err)
				}
			}
		}
		if addExtra {
			if err := w.AddFloat32("pos_embeddings.weight", safetensors.F32, []int{2}, []float32{1, 2}); err != nil {
				t.Fatal(err)
			}
			addExtra = false
		}
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	same := func(n string, i safetensors.TensorInfo, r []byte) (string, safetensors.DType, []int, []byte, bool) {
		return n, i.DType, i.Shape, r, true
	}
	if _, err := LoadBytes(cj, rewrite(same)); err != nil {
		t.Fatalf("rewritten unchanged: %v", err)
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"missing", rewrite(func(n string, i safetensors.TensorInfo, r []byte) (string, safetensors.DType, []int, []byte, bool) {
			return n, i.DType, i.Shape, r, n != "norm.weight"
		}), `tensor "norm.weight" missing`},
		{"extra", func() []byte { addExtra = true; return rewrite(same) }(), `unexpected tensor "pos_embeddings.weight"`},
		{"shape", rewrite(func(n string, i safetensors.TensorInfo, r []byte) (string, safetensors.DType, []int, []byte, bool) {
			if n == "output.weight" {
				return n, i.DType, []int{i.Shape[1], i.Shape[0]}, r, true
			}
			return n, i.DType, i.Shape, r, true
		}), `"output.weight" has shape [32 1000], want [1000 32]`},
		{"dtype", rewrite(func(n string, i safetensors.TensorInfo, r []byte) (string, safetensors.DType, []int, []byte, bool) {
			if n == "norm.weight" {
				return n, safetensors.I16, i.Shape, r, true
			}
			return n, i.DType, i.Shape, r, true
		}), `"norm.weight" has dtype I16`},
		{"nan", rewrite(func(n string, i safetensors.TensorInfo, r []byte) (string, safetensors.DType, []int, []byte, bool) {
			if n == "norm.weight" {
				r = append([]byte(nil), r...)
				r[0], r[1] = 0xc0, 0x7f // BF16 NaN
			}
			return n, i.DType, i.Shape, r, true
		}), `"norm.weight": non-finite`},
		{"truncated", st[:len(st)/2], "model.safetensors"},
		{"garbage", []byte("not a safetensors file"), "model.safetensors"},
	}
	for _, c := range cases {
		_, err := LoadBytes(cj, c.data)
		if !errors.Is(err, ErrWeights) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// No null row (class_dropout 0) but the checkpoint has one: the extra row is a shape error;
	// CFG is refused on a model without it.
	m := tinyConfig(t)
	m["class_dropout"] = 0
	b, _ := json.Marshal(m)
	if _, err := LoadBytes(b, st); err == nil || !strings.Contains(err.Error(), "cls_embedding.embedding_table.weight") {
		t.Errorf("no null row: %v", err)
	}
}

func TestNoNullRefusesCFG(t *testing.T) {
	mdl, err := Load(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := *mdl.Cfg
	cfg.ClassDropout = 0
	w := *mdl.W
	w.Cls = w.Cls[:cfg.NumClasses*cfg.Dim]
	m2, err := New(&cfg, &w)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGenerator(m2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := DefaultSampling()
	s.CFG = 2
	if _, err := g.Generate(context.Background(), Request{Classes: []int{0}, K: 2, Sampling: s}); err == nil || !strings.Contains(err.Error(), "null class") {
		t.Errorf("cfg without null row: %v", err)
	}
}

// TestSaveRoundTrip: Save writes what Load reads back, the same model.
func TestSaveRoundTrip(t *testing.T) {
	m, err := Load(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.Save(dir, true); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := m.Cfg.ConfigJSON()
	b, _ := m2.Cfg.ConfigJSON()
	if !bytes.Equal(a, b) {
		t.Fatalf("config differs:\n%s\n%s", a, b)
	}
	for i, v := range m.W.Output {
		if m2.W.Output[i] != v {
			t.Fatal("weights differ")
		}
	}
}
