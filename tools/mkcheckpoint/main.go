// Command mkcheckpoint writes a FlexTok checkpoint in the official format with
// random weights and real shapes, for benchmarks and memory checks at the sizes
// of the released models (whose weights the project does not ship):
//
//	go run ./tools/mkcheckpoint -size d12 -o /tmp/d12 [-seed 1] [-dtype f32|bf16]
//
// It writes DIR/model.safetensors (every weight, and the config as
// `__metadata__`: one entry per top-level key, the value being Python's str()
// of it, as the official save_safetensors does), DIR/config.json (the same
// config, key order preserved) and DIR/vae/config.json (the diffusers
// AutoencoderKL config; the FlexTok config has `hf_hub_path: 'vae'`).
//
// The configs come from templates/flextok.json.tmpl and templates/vae.json.tmpl,
// derived from conformance/testdata/official/c2_w64_learned_t1 (same keys,
// classes and module order: LearnedNullCond, adaLN expansion 2, head adaLN)
// with the widths, depths and sizes of the chosen -size filled in. The weight
// names and shapes are those of model.(*Config).ExpectedTensors for that config.
//
// Random values (seeded per tensor from -seed and the tensor name, so the
// output does not depend on the order of writing):
//   - sin-cos positional tables: computed as the official code builds them
//     (ω_k = 1/10000^(k/(W/4)), [sin(aω) | cos(aω) | sin(bω) | cos(bω)]);
//   - biases 0 (with -variant, N(0, 0.02²) outside the VAE); VAE GroupNorm gains 1;
//   - VAE convolutions and attention linears: N(0, 1/fan_in) (He-like without
//     the ReLU factor), so every GroupNorm-SiLU-conv keeps unit-order activations;
//   - the decoder's time-embedding MLP: N(0, 1/fan_in), so the adaLN
//     modulation is of order 0.1–0.5 and not negligible;
//   - everything else in the encoder and decoder (trunk linears, adaLN, heads,
//     registers, learned posemb, mask token, null condition): N(0, 0.02²).
//
// Tensors are generated one at a time into one buffer the size of the largest
// tensor and streamed to the file, so memory stays far below the weights' size.
// The output is checked by loading it back with model.LoadFile.
package main

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/flextok-sdk/flextok/sdk/model"
)

//go:embed templates/*.tmpl
var templates embed.FS

// size holds the values the templates need.
type size struct {
	EncDim, EncDepth int
	DecDim, DecDepth int
	HeadDim          int
	Registers        int
	Latent           int
	Grid             int    // patch grid side = posemb table side
	MaxTimestep      string // Python float literal
	Scale            string // FlexTok scaling_factor: literal or null (then the VAE's)
	ActCkpt          bool
	VAEBlocks        []int
	VAELayers        int
	VAEGroups        int
	VAEScale         string
	ImageSize        int

	// Set by -variant (variants): JSON text after the trunks' head_dim, the decoder packer's
	// mask_mode, JSON text after the time embedder's max_timestep, and random (not zero)
	// biases outside the VAE.
	TrunkExtra string
	DecMask    string
	TimeExtra  string
	RandomBias bool
}

// variants change one config branch each that the official reference checkpoints leave at
// its default, so that a test checkpoint exercises it (issue 11): trunk biases, a plain
// (not gated) MLP, attention without QK-norm, a causal_last decoder mask, an odd frequency
// embedding size. Every variant also draws the biases outside the VAE (zero otherwise).
var variants = map[string]func(*size){
	"bias": func(s *size) {
		s.TrunkExtra = "\n        \"qkv_bias\": true,\n        \"proj_bias\": true,\n        \"mlp_bias\": true,"
	},
	"nogate":   func(s *size) { s.TrunkExtra = "\n        \"gated_mlp\": false," },
	"noqknorm": func(s *size) { s.TrunkExtra = "\n        \"qk_norm\": false," },
	"causal":   func(s *size) { s.DecMask = "causal_last" },
	"oddfreq":  func(s *size) { s.TimeExtra = ",\n        \"frequency_embedding_size\": 33" },
}

var sizes = map[string]size{
	// d12-d12 (flextok-architecture.md §4.3, PERFORMANCE.md §1.1): 256 px, 339 M parameters.
	"d12": {EncDim: 768, EncDepth: 12, DecDim: 768, DecDepth: 12, HeadDim: 64, Registers: 256, Latent: 16, Grid: 16,
		MaxTimestep: "1000.0", Scale: "null", ActCkpt: true,
		VAEBlocks: []int{128, 256, 512, 512}, VAELayers: 2, VAEGroups: 32, VAEScale: "1.0", ImageSize: 256},
	// d18-d18: 944 M parameters.
	"d18": {EncDim: 1152, EncDepth: 18, DecDim: 1152, DecDepth: 18, HeadDim: 64, Registers: 256, Latent: 16, Grid: 16,
		MaxTimestep: "1000.0", Scale: "null", ActCkpt: true,
		VAEBlocks: []int{128, 256, 512, 512}, VAELayers: 2, VAEGroups: 32, VAEScale: "1.0", ImageSize: 256},
	// micro: smaller still (16 px images, 4x4 patch grid, 16 registers): the variants'
	// fixtures in conformance/testdata/variants.
	"micro": {EncDim: 32, EncDepth: 2, DecDim: 32, DecDepth: 2, HeadDim: 16, Registers: 16, Latent: 4, Grid: 4,
		MaxTimestep: "1000.0", Scale: "null", ActCkpt: false,
		VAEBlocks: []int{8, 8}, VAELayers: 1, VAEGroups: 4, VAEScale: "1.0", ImageSize: 16},
	// tiny: the same structure at toy sizes (32 px images, 4x4 patch grid), for fast tests.
	"tiny": {EncDim: 64, EncDepth: 2, DecDim: 64, DecDepth: 2, HeadDim: 32, Registers: 32, Latent: 16, Grid: 4,
		MaxTimestep: "1000.0", Scale: "null", ActCkpt: false,
		VAEBlocks: []int{8, 16, 16}, VAELayers: 1, VAEGroups: 4, VAEScale: "1.0", ImageSize: 32},
}

func main() {
	sz := flag.String("size", "d12", "model size: d12, d18, tiny or micro")
	variant := flag.String("variant", "", "config variant: bias, nogate, noqknorm, causal or oddfreq (default none)")
	out := flag.String("o", "", "output directory (created)")
	seed := flag.Uint64("seed", 1, "random seed")
	dtype := flag.String("dtype", "f32", "weight dtype: f32 or bf16")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkcheckpoint -size d12|d18|tiny|micro -o DIR [-variant NAME] [-seed N] [-dtype f32|bf16]")
		os.Exit(2)
	}
	start := time.Now()
	st, err := MakeVariant(*out, *sz, *variant, *seed, *dtype)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkcheckpoint:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: %d tensors, %d parameters, %d bytes (%s), config from %s, %.1fs\n",
		*out, st.Tensors, st.Params, st.Bytes, strings.ToUpper(*dtype), st.ConfigSource, time.Since(start).Seconds())
}

// Stats describes a written checkpoint.
type Stats struct {
	Tensors      int
	Params       int64
	Bytes        int64
	ConfigSource string // as reported by model.LoadFile: "metadata"
}

// Make writes the checkpoint of the named size into dir and checks it.
func Make(dir, sizeName string, seed uint64, dtype string) (Stats, error) {
	return MakeVariant(dir, sizeName, "", seed, dtype)
}

// MakeVariant is Make with a config variant ("": none).
func MakeVariant(dir, sizeName, variant string, seed uint64, dtype string) (Stats, error) {
	var st Stats
	s, ok := sizes[sizeName]
	if !ok {
		return st, fmt.Errorf("unknown -size %q (d12, d18, tiny, micro)", sizeName)
	}
	s.DecMask = "full"
	if variant != "" {
		v, ok := variants[variant]
		if !ok {
			return st, fmt.Errorf("unknown -variant %q (bias, nogate, noqknorm, causal, oddfreq)", variant)
		}
		v(&s)
		s.RandomBias = true
	}
	if dtype != "f32" && dtype != "bf16" {
		return st, fmt.Errorf("unknown -dtype %q (f32, bf16)", dtype)
	}
	cfgJSON, err := render("flextok.json.tmpl", s)
	if err != nil {
		return st, err
	}
	vaeJSON, err := render("vae.json.tmpl", s)
	if err != nil {
		return st, err
	}
	cfg, err := model.ParseConfigJSON(cfgJSON, vaeJSON)
	if err != nil {
		return st, fmt.Errorf("template config: %w", err)
	}
	meta, err := metadata(cfgJSON)
	if err != nil {
		return st, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "vae"), 0o755); err != nil {
		return st, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfgJSON, 0o644); err != nil {
		return st, err
	}
	if err := os.WriteFile(filepath.Join(dir, "vae", "config.json"), vaeJSON, 0o644); err != nil {
		return st, err
	}
	tensors := cfg.ExpectedTensors()
	st.Tensors = len(tensors)
	for _, t := range tensors {
		st.Params += int64(numel(t.Shape))
	}
	path := filepath.Join(dir, "model.safetensors")
	if st.Bytes, err = writeSafetensors(path, tensors, meta, seed, dtype, s.RandomBias); err != nil {
		return st, err
	}
	// Check: the loader must find the config in the metadata, equal to config.json's,
	// and every weight with the expected shape.
	m, err := model.LoadFile(dir)
	if err != nil {
		return st, fmt.Errorf("check: %w", err)
	}
	defer m.Weights.Close()
	st.ConfigSource = m.ConfigSource
	if m.ConfigSource != "metadata" {
		return st, fmt.Errorf("check: config read from %s, want metadata", m.ConfigSource)
	}
	if !reflect.DeepEqual(m.Config, cfg) {
		return st, fmt.Errorf("check: the config parsed from __metadata__ differs from config.json's")
	}
	if m.Weights.Len() != len(tensors) {
		return st, fmt.Errorf("check: %d tensors in the file, want %d", m.Weights.Len(), len(tensors))
	}
	return st, nil
}

func render(name string, s size) ([]byte, error) {
	t, err := template.ParseFS(templates, "templates/"+name)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, s); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if !json.Valid(b.Bytes()) {
		return nil, fmt.Errorf("%s: rendered text is not valid JSON", name)
	}
	return b.Bytes(), nil
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// ---- __metadata__: Python str() of each top-level value ----

type metaEntry struct{ key, value string }

// metadata converts the config JSON into the official __metadata__ entries: a
// string value is stored as is (str of a str), anything else as its Python repr,
// in config order. JSON numbers keep their literal text, which for a config
// written by Python's json.dumps is Python's repr of the number.
func metadata(cfgJSON []byte) ([]metaEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(cfgJSON))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("config: top level is not an object")
	}
	var out []metaEntry
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		var b strings.Builder
		if err := repr(dec, &b, true); err != nil {
			return nil, fmt.Errorf("config %s: %w", key, err)
		}
		out = append(out, metaEntry{key, b.String()})
	}
	return out, nil
}

// repr writes the Python repr of the next JSON value; top is the str() of a
// top-level value (a string then stays unquoted).
func repr(dec *json.Decoder, b *strings.Builder, top bool) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			b.WriteByte('{')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteString(", ")
				}
				k, err := dec.Token()
				if err != nil {
					return err
				}
				b.WriteString(pyStr(k.(string)))
				b.WriteString(": ")
				if err := repr(dec, b, false); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			b.WriteByte('}')
		case '[':
			b.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteString(", ")
				}
				if err := repr(dec, b, false); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			b.WriteByte(']')
		default:
			return fmt.Errorf("unexpected %v", v)
		}
	case string:
		if top {
			b.WriteString(v)
		} else {
			b.WriteString(pyStr(v))
		}
	case json.Number:
		b.WriteString(v.String())
	case bool:
		if v {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case nil:
		b.WriteString("None")
	default:
		return fmt.Errorf("unexpected token %v", tok)
	}
	return nil
}

// pyStr is Python's repr of a str: single quotes unless the text has a single
// quote and no double quote; backslash escapes for the quote, backslash and
// control characters.
func pyStr(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// ---- streaming safetensors writer ----

// header builds the safetensors JSON header (tensors in name order, as the
// Python writer orders tensors of one dtype), padded with spaces to a multiple
// of 8, and returns it with the data size.
func header(tensors []model.Tensor, meta []metaEntry, esize int) ([]byte, int64) {
	jstr := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var b bytes.Buffer
	b.WriteString(`{"__metadata__":{`)
	for i, m := range meta {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jstr(m.key) + ":" + jstr(m.value))
	}
	b.WriteByte('}')
	dt := "F32"
	if esize == 2 {
		dt = "BF16"
	}
	var off int64
	for _, t := range tensors {
		n := int64(numel(t.Shape)) * int64(esize)
		dims := make([]string, len(t.Shape))
		for i, d := range t.Shape {
			dims[i] = strconv.Itoa(d)
		}
		fmt.Fprintf(&b, `,%s:{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}`, jstr(t.Name), dt, strings.Join(dims, ","), off, off+n)
		off += n
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes(), off
}

func writeSafetensors(path string, tensors []model.Tensor, meta []metaEntry, seed uint64, dtype string, randomBias bool) (int64, error) {
	tensors = append([]model.Tensor(nil), tensors...)
	sort.Slice(tensors, func(i, j int) bool { return tensors[i].Name < tensors[j].Name })
	esize := 4
	if dtype == "bf16" {
		esize = 2
	}
	hdr, dataSize := header(tensors, meta, esize)
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var n8 [8]byte
	binary.LittleEndian.PutUint64(n8[:], uint64(len(hdr)))
	w.Write(n8[:])
	w.Write(hdr)
	maxN := 0
	for _, t := range tensors {
		maxN = max(maxN, numel(t.Shape))
	}
	vals := make([]float32, maxN)
	raw := make([]byte, maxN*esize)
	for _, t := range tensors {
		v := vals[:numel(t.Shape)]
		fill(v, t, seed, randomBias)
		r := raw[:len(v)*esize]
		for i, x := range v {
			if esize == 4 {
				binary.LittleEndian.PutUint32(r[4*i:], math.Float32bits(x))
			} else {
				binary.LittleEndian.PutUint16(r[2*i:], toBF16(x))
			}
		}
		if _, err := w.Write(r); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	total := int64(8+len(hdr)) + dataSize
	if fi, err := os.Stat(path); err != nil || fi.Size() != total {
		return 0, errors.Join(err, fmt.Errorf("%s: size mismatch (want %d)", path, total))
	}
	return total, nil
}

// toBF16 rounds to nearest even (NaN stays NaN).
func toBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

// ---- initialisation ----

// fill writes the tensor's initial values (see the package comment); randomBias draws the
// biases outside the VAE from N(0, 0.02²) instead of zero (the variants).
func fill(v []float32, t model.Tensor, seed uint64, randomBias bool) {
	name := t.Name
	h := fnv.New64a()
	io.WriteString(h, name)
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	normal := func(std float64) {
		for i := range v {
			v[i] = float32(rng.NormFloat64() * std)
		}
	}
	constant := func(c float32) {
		for i := range v {
			v[i] = c
		}
	}
	fanIn := 1
	if len(t.Shape) > 1 {
		fanIn = numel(t.Shape[1:])
	}
	switch {
	case strings.HasSuffix(name, ".posembs") && len(t.Shape) == 4 && t.Shape[0] == 1 && t.Shape[1] >= 4 && t.Shape[1]%4 == 0 && t.Shape[2] == t.Shape[3]:
		sinCos(v, t.Shape[1], t.Shape[2])
	case strings.HasPrefix(name, model.VAEPrefix):
		switch {
		case strings.HasSuffix(name, ".bias"):
			constant(0)
		case len(t.Shape) == 1: // GroupNorm gains
			constant(1)
		default:
			normal(1 / math.Sqrt(float64(fanIn)))
		}
	case strings.HasSuffix(name, ".bias") && !randomBias:
		constant(0)
	case strings.HasSuffix(name, ".bias"):
		normal(0.02)
	case strings.Contains(name, "time_embedder.mlp."):
		normal(1 / math.Sqrt(float64(fanIn)))
	default:
		normal(0.02)
	}
}

// sinCos fills the [1,W,S,S] 2-D sin-cos table: at (row a, col b) the channels
// are [sin(aω) | cos(aω) | sin(bω) | cos(bω)], ω_k = 1/10000^(k/(W/4)), in f32
// as the official build_2d_sincos_posemb does.
func sinCos(v []float32, W, S int) {
	q := W / 4
	omega := make([]float32, q)
	for k := range omega {
		e := float32(k) / float32(q)
		omega[k] = 1 / float32(math.Pow(10000, float64(e)))
	}
	for k := 0; k < q; k++ {
		for a := 0; a < S; a++ {
			for b := 0; b < S; b++ {
				pa, pb := float32(a)*omega[k], float32(b)*omega[k]
				i := a*S + b
				v[(0*q+k)*S*S+i] = float32(math.Sin(float64(pa)))
				v[(1*q+k)*S*S+i] = float32(math.Cos(float64(pa)))
				v[(2*q+k)*S*S+i] = float32(math.Sin(float64(pb)))
				v[(3*q+k)*S*S+i] = float32(math.Cos(float64(pb)))
			}
		}
	}
}
