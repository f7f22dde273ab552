package ar

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// ErrConfig marks a config.json that breaks a rule of docs/ar-checkpoint.md.
var ErrConfig = errors.New("flextok/ar: config.json")

// MaxParams caps a model's parameter count (the spec lets readers cap sizes for memory): 2^31
// float32 values, 8 GiB.
const MaxParams = 1 << 31

// TokenizerSpec is the tokenizer an AR model was trained for (config.json "tokenizer").
type TokenizerSpec struct {
	Name         string // descriptive, not compared
	Digest       [32]byte
	Levels       []int
	CodebookSize int
	Registers    int
}

// SamplingHints are the config's optional "sampling_hints" (nil fields: absent).
type SamplingHints struct {
	CFGScale    *float64
	CFGInterval *int
	Temperature *float64
	TopK        *int
	TopP        *float64
}

// Config is an AR checkpoint's config.json (format flextok-ar 1), checked.
type Config struct {
	Dim, Layers, Heads, KVHeads int
	MultipleOf                  int
	FFNDimMultiplier            *float64
	FFNHidden                   int
	NormEps, RopeBase           float64
	BlockSize                   int
	NumClasses                  int
	ClassDropout                float64
	VocabSize                   int
	Tokenizer                   TokenizerSpec
	Name                        string   // optional
	Classes                     []string // optional: NumClasses names
	Hints                       *SamplingHints
}

// HeadDim is Dim/Heads.
func (c *Config) HeadDim() int { return c.Dim / c.Heads }

// HasNull says whether the null class row exists (class_dropout > 0): CFG needs it.
func (c *Config) HasNull() bool { return c.ClassDropout > 0 }

// ClassRows is the number of rows of the class table.
func (c *Config) ClassRows() int {
	if c.HasNull() {
		return c.NumClasses + 1
	}
	return c.NumClasses
}

// Params is the parameter count (docs/ar-checkpoint.md "Size budget").
func (c *Config) Params() int64 {
	d, hd := int64(c.Dim), int64(c.HeadDim())
	blk := d*int64(c.Heads+2*c.KVHeads)*hd + d*d + 3*d*int64(c.FFNHidden) + 2*d
	return 2*int64(c.VocabSize)*d + int64(c.ClassRows())*d + int64(c.Layers)*blk + d
}

// FFNHiddenRule is LlamaGen's SwiGLU hidden size for width dim.
func FFNHiddenRule(dim, multipleOf int, mult *float64) int {
	h := int(2 * 4 * dim / 3)
	if mult != nil {
		h = int(*mult * float64(h))
	}
	if h%multipleOf != 0 {
		h += multipleOf - h%multipleOf
	}
	return h
}

var configKeys = map[string]bool{
	"format": true, "format_version": true, "architecture": true, "positions": true, "dim": true,
	"n_layer": true, "n_head": true, "n_kv_head": true, "multiple_of": true, "ffn_dim_multiplier": true,
	"ffn_hidden": true, "norm_eps": true, "rope_base": true, "block_size": true, "cls_token_num": true,
	"num_classes": true, "class_dropout": true, "vocab_size": true, "tokenizer": true, "name": true,
	"classes": true, "sampling_hints": true,
}

type object struct {
	path string
	m    map[string]json.RawMessage
}

func cerr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
}

func parseObject(path string, raw []byte, allowed map[string]bool) (object, error) {
	o := object{path: path}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return o, cerr("%s: not a JSON object", path)
	}
	o.m = map[string]json.RawMessage{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return o, cerr("%s: %v", path, err)
		}
		k := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return o, cerr("%s.%s: %v", path, k, err)
		}
		if _, dup := o.m[k]; dup {
			return o, cerr("%s: key %q given twice", path, k)
		}
		if !allowed[k] {
			return o, cerr("%s: unknown key %q", path, k)
		}
		o.m[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return o, cerr("%s: %v", path, err)
	}
	if dec.More() || dec.InputOffset() != int64(len(bytes.TrimRight(raw, " \t\r\n"))) {
		return o, cerr("%s: data after the object", path)
	}
	return o, nil
}

func (o object) has(k string) bool { _, ok := o.m[k]; return ok }

func (o object) raw(k string) (json.RawMessage, error) {
	v, ok := o.m[k]
	if !ok {
		return nil, cerr("%s: key %q missing", o.path, k)
	}
	return v, nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

func (o object) str(k string) (string, error) {
	v, err := o.raw(k)
	if err != nil {
		return "", err
	}
	var s string
	if v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", cerr("%s.%s = %s: want a string", o.path, k, short(v))
	}
	return s, nil
}

func short(v json.RawMessage) string {
	s := string(v)
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

// integer reads an int (a JSON number without fraction or exponent) in [lo, hi].
func (o object) integer(k string, lo, hi int) (int, error) {
	v, err := o.raw(k)
	if err != nil {
		return 0, err
	}
	return intValue(o.path+"."+k, v, lo, hi)
}

func intValue(path string, v json.RawMessage, lo, hi int) (int, error) {
	s := string(bytes.TrimSpace(v))
	var n json.Number
	if s == "" || strings.ContainsAny(s, ".eE") || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) || json.Unmarshal(v, &n) != nil {
		return 0, cerr("%s = %s: want an integer", path, short(v))
	}
	i, err := n.Int64()
	if err != nil || i < int64(lo) || i > int64(hi) {
		return 0, cerr("%s = %s: want an integer in [%d, %d]", path, s, lo, hi)
	}
	return int(i), nil
}

// number reads a finite number (ints allowed, bools not).
func (o object) number(k string) (float64, error) {
	v, err := o.raw(k)
	if err != nil {
		return 0, err
	}
	return numValue(o.path+"."+k, v)
}

func numValue(path string, v json.RawMessage) (float64, error) {
	s := string(bytes.TrimSpace(v))
	var f float64
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) || json.Unmarshal(v, &f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, cerr("%s = %s: want a finite number", path, short(v))
	}
	return f, nil
}

func (o object) want(k, want string) error {
	v, err := o.raw(k)
	if err != nil {
		return err
	}
	var s string
	if json.Unmarshal(v, &s) != nil || s != want || v[0] != '"' {
		return cerr("%s.%s = %s: want %q", o.path, k, short(v), want)
	}
	return nil
}

// ParseConfig parses and checks an AR config.json (docs/ar-checkpoint.md, rules 1–4). It never
// panics; every error wraps ErrConfig and names the key, the value and what was wanted.
func ParseConfig(data []byte) (*Config, error) {
	o, err := parseObject("config.json", data, configKeys)
	if err != nil {
		return nil, err
	}
	for k, want := range map[string]string{"format": "flextok-ar", "architecture": "llamagen-gpt-c2i", "positions": "rope1d"} {
		if err := o.want(k, want); err != nil {
			return nil, err
		}
	}
	if _, err := o.integer("format_version", 1, 1); err != nil {
		return nil, err
	}
	if _, err := o.integer("cls_token_num", 1, 1); err != nil {
		return nil, err
	}
	c := &Config{}
	ints := []struct {
		k      string
		dst    *int
		lo, hi int
	}{
		{"dim", &c.Dim, 2, 1 << 16}, {"n_layer", &c.Layers, 1, 1 << 10}, {"n_head", &c.Heads, 1, 1 << 12},
		{"n_kv_head", &c.KVHeads, 1, 1 << 12}, {"multiple_of", &c.MultipleOf, 1, 1 << 20},
		{"ffn_hidden", &c.FFNHidden, 1, 1 << 20}, {"block_size", &c.BlockSize, 1, 65536},
		{"num_classes", &c.NumClasses, 1, 1 << 20}, {"vocab_size", &c.VocabSize, 2, 1 << 24},
	}
	for _, f := range ints {
		if *f.dst, err = o.integer(f.k, f.lo, f.hi); err != nil {
			return nil, err
		}
	}
	if c.KVHeads > c.Heads {
		return nil, cerr("config.json: n_kv_head %d > n_head %d", c.KVHeads, c.Heads)
	}
	if c.Dim%c.Heads != 0 || (c.Dim/c.Heads)%2 != 0 {
		return nil, cerr("config.json: dim %d, n_head %d: want n_head to divide dim with an even head size", c.Dim, c.Heads)
	}
	if c.Heads%c.KVHeads != 0 {
		return nil, cerr("config.json: n_kv_head %d does not divide n_head %d", c.KVHeads, c.Heads)
	}
	if v, ok := o.m["ffn_dim_multiplier"]; ok && !isNull(v) {
		f, err := numValue("config.json.ffn_dim_multiplier", v)
		if err != nil {
			return nil, err
		}
		if f <= 0 || f > 64 {
			return nil, cerr("config.json.ffn_dim_multiplier = %v: want > 0 (and ≤ 64)", f)
		}
		c.FFNDimMultiplier = &f
	}
	if c.NormEps, err = o.number("norm_eps"); err != nil {
		return nil, err
	}
	if c.RopeBase, err = o.number("rope_base"); err != nil {
		return nil, err
	}
	if c.ClassDropout, err = o.number("class_dropout"); err != nil {
		return nil, err
	}
	if c.NormEps <= 0 || c.RopeBase <= 0 {
		return nil, cerr("config.json: norm_eps %v, rope_base %v: want both > 0", c.NormEps, c.RopeBase)
	}
	if c.ClassDropout < 0 || c.ClassDropout > 1 {
		return nil, cerr("config.json.class_dropout = %v: want in [0, 1]", c.ClassDropout)
	}
	if want := FFNHiddenRule(c.Dim, c.MultipleOf, c.FFNDimMultiplier); c.FFNHidden != want {
		return nil, cerr("config.json.ffn_hidden = %d: LlamaGen's rule gives %d", c.FFNHidden, want)
	}
	if p := c.Params(); p > MaxParams {
		return nil, cerr("config.json: %d parameters, over this reader's cap of %d (memory)", p, int64(MaxParams))
	}
	if o.has("name") {
		if c.Name, err = o.str("name"); err != nil {
			return nil, err
		}
		if len(c.Name) < 1 || len(c.Name) > 256 || !utf8.ValidString(c.Name) {
			return nil, cerr("config.json.name: want 1–256 bytes of UTF-8, got %d bytes", len(c.Name))
		}
	}
	if o.has("classes") {
		var names []string
		if err := json.Unmarshal(o.m["classes"], &names); err != nil || names == nil {
			return nil, cerr("config.json.classes = %s: want an array of strings", short(o.m["classes"]))
		}
		if len(names) != c.NumClasses {
			return nil, cerr("config.json.classes: %d names for num_classes %d", len(names), c.NumClasses)
		}
		seen := map[string]bool{}
		for i, n := range names {
			if n == "" || seen[n] {
				return nil, cerr("config.json.classes[%d] = %q: want distinct non-empty names", i, n)
			}
			seen[n] = true
		}
		c.Classes = names
	}
	if c.Tokenizer, err = parseTokenizer(o); err != nil {
		return nil, err
	}
	if c.VocabSize != c.Tokenizer.CodebookSize {
		return nil, cerr("config.json: vocab_size %d ≠ tokenizer.codebook_size %d", c.VocabSize, c.Tokenizer.CodebookSize)
	}
	if c.BlockSize != c.Tokenizer.Registers {
		return nil, cerr("config.json: block_size %d ≠ tokenizer.n_registers %d", c.BlockSize, c.Tokenizer.Registers)
	}
	if o.has("sampling_hints") {
		if c.Hints, err = parseHints(o.m["sampling_hints"]); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func parseTokenizer(root object) (TokenizerSpec, error) {
	var t TokenizerSpec
	raw, err := root.raw("tokenizer")
	if err != nil {
		return t, err
	}
	o, err := parseObject("config.json.tokenizer", raw, map[string]bool{"digest": true, "fsq_levels": true, "codebook_size": true, "n_registers": true, "name": true})
	if err != nil {
		return t, err
	}
	d, err := o.str("digest")
	if err != nil {
		return t, err
	}
	h, ok := strings.CutPrefix(d, "sha256:")
	b, herr := hex.DecodeString(h)
	if !ok || herr != nil || len(b) != 32 || strings.ToLower(h) != h {
		return t, cerr("config.json.tokenizer.digest = %q: want \"sha256:\" and 64 lower-case hex digits", d)
	}
	copy(t.Digest[:], b)
	lv, err := o.raw("fsq_levels")
	if err != nil {
		return t, err
	}
	var items []json.RawMessage
	if json.Unmarshal(lv, &items) != nil || len(items) == 0 || len(items) > 16 {
		return t, cerr("config.json.tokenizer.fsq_levels = %s: want 1–16 integers ≥ 2", short(lv))
	}
	prod := 1
	for i, it := range items {
		l, err := intValue(fmt.Sprintf("config.json.tokenizer.fsq_levels[%d]", i), it, 2, 1<<24)
		if err != nil {
			return t, err
		}
		if prod > (1<<24)/l {
			return t, cerr("config.json.tokenizer.fsq_levels: product over 2^24")
		}
		prod *= l
		t.Levels = append(t.Levels, l)
	}
	if t.CodebookSize, err = o.integer("codebook_size", 2, 1<<24); err != nil {
		return t, err
	}
	if t.CodebookSize != prod {
		return t, cerr("config.json.tokenizer.codebook_size %d ≠ the product of fsq_levels %d", t.CodebookSize, prod)
	}
	if t.Registers, err = o.integer("n_registers", 1, 65536); err != nil {
		return t, err
	}
	if o.has("name") {
		if t.Name, err = o.str("name"); err != nil {
			return t, err
		}
	}
	return t, nil
}

func parseHints(raw json.RawMessage) (*SamplingHints, error) {
	o, err := parseObject("config.json.sampling_hints", raw, map[string]bool{"cfg_scale": true, "cfg_interval": true, "temperature": true, "top_k": true, "top_p": true})
	if err != nil {
		return nil, err
	}
	h := &SamplingHints{}
	for _, f := range []struct {
		k   string
		dst **float64
	}{{"cfg_scale", &h.CFGScale}, {"temperature", &h.Temperature}, {"top_p", &h.TopP}} {
		if o.has(f.k) {
			v, err := o.number(f.k)
			if err != nil {
				return nil, err
			}
			*f.dst = &v
		}
	}
	for _, f := range []struct {
		k   string
		lo  int
		dst **int
	}{{"cfg_interval", -1, &h.CFGInterval}, {"top_k", 0, &h.TopK}} {
		if o.has(f.k) {
			v, err := o.integer(f.k, f.lo, 1<<30)
			if err != nil {
				return nil, err
			}
			*f.dst = &v
		}
	}
	return h, nil
}
