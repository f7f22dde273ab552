package webpkg

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Identity of the manifest format.
const (
	Format       = "flextok-web"   // the manifest's "format"
	Version      = 1               // the only version this package reads and writes
	ManifestName = "manifest.json" // the manifest's file name in a package
)

// Graph roles. A package has RoleDecoder and RoleVAEDecoder; RoleDecoderFP16 is optional.
const (
	RoleDecoder     = "decoder"      // velocity network, fp32
	RoleDecoderFP16 = "decoder_fp16" // velocity network with float16 Linear layers
	RoleVAEDecoder  = "vae_decoder"  // latents to image, fp32
)

// Precisions of a graph.
const (
	FP32 = "fp32"
	FP16 = "fp16"
)

// Bounds Parse enforces.
const (
	MaxManifestBytes = 1 << 20   // a manifest over this is refused before parsing
	MaxFiles         = 64        // files in a package
	MaxChunks        = 1 << 16   // chunks of one file
	MaxFileSize      = 1 << 40   // bytes of one file
	MaxNameLen       = 255       // bytes of a file or chunk name
	MaxSide          = 1 << 16   // any size in Sizes
	MaxSeed          = 1<<53 - 1 // largest seed: JSON numbers above lose precision in JavaScript
	maxOpset         = 1000
	maxSteps         = 100000
)

// Errors. Every error Parse returns is an *Error wrapping one of them.
var (
	// ErrInvalid: the manifest is malformed or inconsistent, or not a flextok-web manifest.
	ErrInvalid = errors.New("invalid web package manifest")
	// ErrUnsupported: the manifest is of a version this SDK does not read.
	ErrUnsupported = errors.New("unsupported web package manifest")
)

// Error is a manifest error: the field (a JSON path such as files["decoder.onnx"].sha256),
// its kind (ErrInvalid or ErrUnsupported) and what was wrong.
type Error struct {
	Field  string
	Err    error
	Detail string
}

func (e *Error) Error() string {
	msg := "flextok/webpkg: " + e.Err.Error()
	if e.Field != "" {
		msg += ": " + e.Field
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) *Error {
	return &Error{Field: field, Err: ErrInvalid, Detail: fmt.Sprintf(format, args...)}
}

// Manifest is manifest.json of a browser model package (docs/web-package.md).
type Manifest struct {
	Format      string           `json:"format"`           // Format
	Version     int              `json:"version"`          // Version
	Exporter    string           `json:"exporter_version"` // native/onnx's ExporterVersion
	Opset       int              `json:"opset"`            // ONNX opset of every graph
	Model       Model            `json:"model"`            // the model the graphs were exported from
	DecodeHints *Hints           `json:"hints"`            // the model's decode hints; nil = none
	Sizes       Sizes            `json:"sizes"`            // fixed sizes of the graphs
	Graphs      map[string]Graph `json:"graphs"`           // role → files
	Files       map[string]File  `json:"files"`            // file name → size, hash, chunks
}

// Model is the identity payloads carry (payload.Model), in JSON.
type Model struct {
	Name      string `json:"name"`
	Digest    string `json:"digest"` // 64 lowercase hex digits: the content digest
	Levels    []int  `json:"fsq_levels"`
	MaxTokens int    `json:"max_tokens"`
}

// Hints are the model's decode hints (payload.Hints), in JSON.
type Hints struct {
	Steps    int      `json:"steps"`    // 0 = the decoder's default
	Guidance *float32 `json:"guidance"` // nil = the decoder's default
	APG      bool     `json:"apg"`
	Seed     *uint64  `json:"seed"` // nil = the decoder's choice; at most MaxSeed
}

// Sizes are the fixed sizes of the graphs: the JSON of native/onnx's Sizes.
type Sizes struct {
	Height int  `json:"image_height"`
	Width  int  `json:"image_width"`
	C      int  `json:"latent_channels"`
	H      int  `json:"latent_height"`
	W      int  `json:"latent_width"`
	R      int  `json:"tokens"`       // registers per image (= model.max_tokens)
	D      int  `json:"fsq_dims"`     // FSQ dimensions (= len(model.fsq_levels))
	FP16   bool `json:"decoder_fp16"` // the package has a decoder_fp16 graph
}

// Graph names a graph's files: the ONNX model and its external data file.
type Graph struct {
	Graph     string `json:"graph"`
	Data      string `json:"data"`
	Precision string `json:"precision"` // FP32 or FP16
}

// File is one file of the package: its size and SHA-256 and the chunks that concatenate to it.
type File struct {
	Size   int64   `json:"size"`
	SHA256 string  `json:"sha256"`
	Chunks []Chunk `json:"chunks"`
}

// Chunk is one downloadable piece of a file.
type Chunk struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ChunkName is the name of chunk i of a file split into several chunks.
func ChunkName(file string, i int) string { return fmt.Sprintf("%s.part%03d", file, i) }

// Parse reads and checks a manifest: format and version, the model identity and hints, the
// sizes, that every graph's files are listed, and for every file valid names (no '/', '\',
// "..", leading '.' or control characters), lowercase hex SHA-256s and chunks whose sizes
// sum to the file's size, named as Split names them. Unknown keys are ignored, as payloads
// ignore them (docs/web-package.md).
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestBytes {
		return nil, invalid("", "%d bytes: over the %d-byte limit", len(data), MaxManifestBytes)
	}
	// The format and version first, so that another format or a future version is named as
	// such rather than as whatever field it fails on.
	var head struct {
		Format  *string          `json:"format"`
		Version *json.RawMessage `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, invalid("", "not a JSON object: %v", jsonDetail(err))
	}
	if head.Format == nil {
		return nil, invalid("format", "missing (want %q)", Format)
	}
	if *head.Format != Format {
		return nil, invalid("format", "%q (want %q)", trunc(*head.Format), Format)
	}
	if head.Version == nil {
		return nil, invalid("version", "missing (want %d)", Version)
	}
	if v := string(*head.Version); v != "1" {
		return nil, &Error{Field: "version", Err: ErrUnsupported, Detail: fmt.Sprintf("%s (this SDK reads version %d)", trunc(v), Version)}
	}
	var raw struct {
		Manifest
		Model  *Model            `json:"model"`
		Hints  json.RawMessage   `json:"hints"`
		Sizes  *Sizes            `json:"sizes"`
		Graphs map[string]*Graph `json:"graphs"`
		Files  map[string]*File  `json:"files"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, invalid(strings.TrimPrefix(te.Field, "Manifest."), "JSON %s where %s was expected", te.Value, te.Type)
		}
		return nil, invalid("", "%v", jsonDetail(err))
	}
	m := &raw.Manifest
	m.Format, m.Version = Format, Version
	switch {
	case raw.Model == nil:
		return nil, invalid("model", "missing")
	case raw.Sizes == nil:
		return nil, invalid("sizes", "missing")
	case raw.Graphs == nil:
		return nil, invalid("graphs", "missing")
	case raw.Files == nil:
		return nil, invalid("files", "missing")
	}
	m.Model, m.Sizes = *raw.Model, *raw.Sizes
	if h := bytes.TrimSpace(raw.Hints); len(h) > 0 && string(h) != "null" {
		m.DecodeHints = new(Hints)
		if err := json.Unmarshal(h, m.DecodeHints); err != nil {
			return nil, invalid("hints", "%v", jsonDetail(err))
		}
	}
	m.Graphs = make(map[string]Graph, len(raw.Graphs))
	for k, g := range raw.Graphs {
		if g == nil {
			return nil, invalid(fmt.Sprintf("graphs[%q]", trunc(k)), "null")
		}
		m.Graphs[k] = *g
	}
	m.Files = make(map[string]File, len(raw.Files))
	for k, f := range raw.Files {
		if f == nil {
			return nil, invalid(fmt.Sprintf("files[%q]", trunc(k)), "null")
		}
		m.Files[k] = *f
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Validate checks m as Parse does (Parse calls it); use it on a manifest built in code.
func (m *Manifest) Validate() error {
	if m.Format != Format {
		return invalid("format", "%q (want %q)", trunc(m.Format), Format)
	}
	if m.Version != Version {
		return &Error{Field: "version", Err: ErrUnsupported, Detail: fmt.Sprintf("%d (this SDK reads version %d)", m.Version, Version)}
	}
	if len(m.Exporter) > MaxNameLen || !utf8.ValidString(m.Exporter) {
		return invalid("exporter_version", "want at most %d bytes of UTF-8", MaxNameLen)
	}
	if m.Opset < 1 || m.Opset > maxOpset {
		return invalid("opset", "%d (want 1 to %d)", m.Opset, maxOpset)
	}
	if err := m.checkModel(); err != nil {
		return err
	}
	if err := m.DecodeHints.check(); err != nil {
		return err
	}
	if err := m.checkSizes(); err != nil {
		return err
	}
	if err := m.checkFiles(); err != nil {
		return err
	}
	return m.checkGraphs()
}

func (m *Manifest) checkModel() error {
	md := &m.Model
	if md.Name == "" || len(md.Name) > payload.DefaultLimits.MaxString || !utf8.ValidString(md.Name) {
		return invalid("model.name", "%q: want 1 to %d bytes of UTF-8", trunc(md.Name), payload.DefaultLimits.MaxString)
	}
	if !isHex(md.Digest) {
		return invalid("model.digest", "%q: want 64 lowercase hex digits", trunc(md.Digest))
	}
	pm := payload.Model{Levels: md.Levels}
	if pm.CodebookSize() == 0 {
		return invalid("model.fsq_levels", "%v: want 1 to 16 levels of 2 to 65536 with a product of at most 2^24", trunc(fmt.Sprint(md.Levels)))
	}
	if md.MaxTokens < 1 || md.MaxTokens > 1<<16 {
		return invalid("model.max_tokens", "%d (want 1 to 65536)", md.MaxTokens)
	}
	return nil
}

func (h *Hints) check() error {
	if h == nil {
		return nil
	}
	if h.Steps < 0 || h.Steps > maxSteps {
		return invalid("hints.steps", "%d (want 0 to %d)", h.Steps, maxSteps)
	}
	if h.Guidance != nil {
		if g := float64(*h.Guidance); math.IsNaN(g) || math.IsInf(g, 0) || g <= 0 {
			return invalid("hints.guidance", "%v (want > 0; 1 turns guidance off)", g)
		}
	}
	if h.Seed != nil && *h.Seed > MaxSeed {
		return invalid("hints.seed", "%d (want at most 2^53-1, which JavaScript reads exactly)", *h.Seed)
	}
	return nil
}

func (m *Manifest) checkSizes() error {
	s := &m.Sizes
	for _, f := range []struct {
		name string
		v    int
	}{{"image_height", s.Height}, {"image_width", s.Width}, {"latent_channels", s.C}, {"latent_height", s.H}, {"latent_width", s.W}, {"tokens", s.R}, {"fsq_dims", s.D}} {
		if f.v < 1 || f.v > MaxSide {
			return invalid("sizes."+f.name, "%d (want 1 to %d)", f.v, MaxSide)
		}
	}
	if s.R != m.Model.MaxTokens {
		return invalid("sizes.tokens", "%d, but model.max_tokens is %d", s.R, m.Model.MaxTokens)
	}
	if s.D != len(m.Model.Levels) {
		return invalid("sizes.fsq_dims", "%d, but model.fsq_levels has %d levels", s.D, len(m.Model.Levels))
	}
	if _, ok := m.Graphs[RoleDecoderFP16]; ok != s.FP16 {
		return invalid("sizes.decoder_fp16", "%v, but the graphs %s %q", s.FP16, map[bool]string{true: "have", false: "lack"}[ok], RoleDecoderFP16)
	}
	return nil
}

func (m *Manifest) checkFiles() error {
	if len(m.Files) == 0 || len(m.Files) > MaxFiles {
		return invalid("files", "%d files (want 1 to %d)", len(m.Files), MaxFiles)
	}
	owner := map[string]string{} // chunk name → file
	for _, name := range sortedKeys(m.Files) {
		f := m.Files[name]
		field := fmt.Sprintf("files[%q]", trunc(name))
		if err := checkName(name); err != nil {
			return invalid(field, "%v", err)
		}
		if f.Size < 0 || f.Size > MaxFileSize {
			return invalid(field+".size", "%d (want 0 to 2^40)", f.Size)
		}
		if !isHex(f.SHA256) {
			return invalid(field+".sha256", "%q: want 64 lowercase hex digits", trunc(f.SHA256))
		}
		if len(f.Chunks) == 0 || len(f.Chunks) > MaxChunks {
			return invalid(field+".chunks", "%d chunks (want 1 to %d)", len(f.Chunks), MaxChunks)
		}
		var sum int64
		for i, c := range f.Chunks {
			cf := fmt.Sprintf("%s.chunks[%d]", field, i)
			want := name
			if len(f.Chunks) > 1 {
				want = ChunkName(name, i)
			}
			if c.Name != want {
				return invalid(cf+".name", "%q (want %q)", trunc(c.Name), want)
			}
			if o, dup := owner[c.Name]; dup {
				return invalid(cf+".name", "%q is also a chunk of %q", trunc(c.Name), o)
			}
			if c.Name != name {
				if _, clash := m.Files[c.Name]; clash {
					return invalid(cf+".name", "%q is also a file", trunc(c.Name))
				}
			}
			owner[c.Name] = name
			if c.Size < 0 || (c.Size == 0 && f.Size != 0) || c.Size > MaxFileSize {
				return invalid(cf+".size", "%d (want 1 to 2^40)", c.Size)
			}
			if !isHex(c.SHA256) {
				return invalid(cf+".sha256", "%q: want 64 lowercase hex digits", trunc(c.SHA256))
			}
			sum += c.Size
			if sum > f.Size {
				break
			}
		}
		if sum != f.Size {
			return invalid(field+".chunks", "chunk sizes sum to %d or more, but the file has %d bytes", sum, f.Size)
		}
		if len(f.Chunks) == 1 && f.Chunks[0].SHA256 != f.SHA256 {
			return invalid(field+".chunks[0].sha256", "%s, but the file, its only chunk, has sha256 %s", f.Chunks[0].SHA256, f.SHA256)
		}
	}
	return nil
}

func (m *Manifest) checkGraphs() error {
	for _, role := range []string{RoleDecoder, RoleVAEDecoder} {
		if _, ok := m.Graphs[role]; !ok {
			return invalid("graphs", "no %q graph", role)
		}
	}
	for _, role := range sortedKeys(m.Graphs) {
		g := m.Graphs[role]
		field := fmt.Sprintf("graphs[%q]", trunc(role))
		want := FP32
		switch role {
		case RoleDecoder, RoleVAEDecoder:
		case RoleDecoderFP16:
			want = FP16
		default:
			return invalid(field, "unknown role (want %s, %s or %s)", RoleDecoder, RoleDecoderFP16, RoleVAEDecoder)
		}
		if g.Precision != want {
			return invalid(field+".precision", "%q (want %q)", trunc(g.Precision), want)
		}
		for _, f := range []struct{ key, name string }{{"graph", g.Graph}, {"data", g.Data}} {
			if _, ok := m.Files[f.name]; !ok {
				return invalid(field+"."+f.key, "%q is not in files", trunc(f.name))
			}
		}
		if g.Graph == g.Data {
			return invalid(field+".data", "%q is also the graph", trunc(g.Data))
		}
	}
	return nil
}

// checkName refuses names that could leave the package's directory or hide in it.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > MaxNameLen:
		return fmt.Errorf("name of %d bytes (want at most %d)", len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return errors.New("name is not UTF-8")
	case strings.ContainsAny(name, `/\:`):
		return errors.New(`name contains '/', '\' or ':' (want a plain file name)`)
	case strings.Contains(name, ".."):
		return errors.New(`name contains ".."`)
	case name[0] == '.':
		return errors.New("name starts with '.'")
	case name == ManifestName:
		return errors.New("name is the manifest's")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return errors.New("name contains a control character")
		}
	}
	return nil
}

// Identity is the model identity payloads carry: a decoder checks payloads against it.
func (m *Manifest) Identity() payload.Model {
	pm := payload.Model{Name: m.Model.Name, Levels: append([]int(nil), m.Model.Levels...), MaxTokens: m.Model.MaxTokens}
	hex.Decode(pm.Digest[:], []byte(m.Model.Digest)) //nolint:errcheck // Parse checked it
	return pm
}

// Hints are the model's decode hints as payload.Hints, nil when the manifest has none.
func (m *Manifest) Hints() *payload.Hints {
	h := m.DecodeHints
	if h == nil {
		return nil
	}
	ph := &payload.Hints{Steps: h.Steps, APG: h.APG}
	if h.Guidance != nil {
		g := *h.Guidance
		ph.Guidance = &g
	}
	if h.Seed != nil {
		s := *h.Seed
		ph.Seed = &s
	}
	return ph
}

// HintsFrom converts payload hints to the manifest's (nil stays nil).
func HintsFrom(h *payload.Hints) *Hints {
	if h == nil {
		return nil
	}
	out := &Hints{Steps: h.Steps, APG: h.APG}
	if h.Guidance != nil {
		g := *h.Guidance
		out.Guidance = &g
	}
	if h.Seed != nil {
		s := *h.Seed
		out.Seed = &s
	}
	return out
}

// ModelFrom converts a payload identity to the manifest's.
func ModelFrom(pm payload.Model) Model {
	return Model{Name: pm.Name, Digest: hex.EncodeToString(pm.Digest[:]), Levels: append([]int(nil), pm.Levels...), MaxTokens: pm.MaxTokens}
}

// Marshal validates m and writes it as indented JSON with a final newline (map keys sorted,
// so equal manifests give equal bytes).
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Chunk returns the chunk named name and the file it belongs to.
func (m *Manifest) Chunk(name string) (Chunk, string, bool) {
	for fname, f := range m.Files {
		for _, c := range f.Chunks {
			if c.Name == name {
				return c, fname, true
			}
		}
	}
	return Chunk{}, "", false
}

// TotalSize is the sum of the sizes of the files: the bytes a full download transfers.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

func isHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func trunc(s string) string {
	if len(s) <= 80 {
		return s
	}
	i := 80
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func jsonDetail(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s: JSON %s where %s was expected", te.Field, te.Value, te.Type)
	}
	return err.Error()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
