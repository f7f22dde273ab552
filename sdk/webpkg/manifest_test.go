package webpkg

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/payload"
)

// testPackage builds a small valid package in memory: its manifest and every chunk's bytes.
func testPackage(t testing.TB, fp16 bool) (*Manifest, map[string][]byte) {
	t.Helper()
	g := float32(7.5)
	m := &Manifest{
		Format: Format, Version: Version, Exporter: "test", Opset: 17,
		Model:       Model{Name: "tiny", Digest: strings.Repeat("ab", 32), Levels: []int{8, 8, 8, 5, 5, 5}, MaxTokens: 256},
		DecodeHints: &Hints{Steps: 25, Guidance: &g, APG: true},
		Sizes:       Sizes{Height: 64, Width: 64, C: 4, H: 8, W: 8, R: 256, D: 6, FP16: fp16},
		Graphs: map[string]Graph{
			RoleDecoder:    {Graph: "decoder.onnx", Data: "decoder.onnx.data", Precision: FP32},
			RoleVAEDecoder: {Graph: "vae_decoder.onnx", Data: "vae_decoder.onnx.data", Precision: FP32},
		},
		Files: map[string]File{},
	}
	if fp16 {
		m.Graphs[RoleDecoderFP16] = Graph{Graph: "decoder_fp16.onnx", Data: "decoder_fp16.onnx.data", Precision: FP16}
	}
	chunks := map[string][]byte{}
	for i, g := range sortedKeys(m.Graphs) {
		for j, name := range []string{m.Graphs[g].Graph, m.Graphs[g].Data} {
			data := bytes.Repeat([]byte{byte(i*2 + j + 1)}, 700+j*3000+i)
			f, err := Split(name, bytes.NewReader(data), int64(len(data)), MinChunkSize, func(c string, b []byte) error {
				chunks[c] = append([]byte(nil), b...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			m.Files[name] = f
		}
	}
	return m, chunks
}

func TestRoundTrip(t *testing.T) {
	for _, fp16 := range []bool{false, true} {
		m, chunks := testPackage(t, fp16)
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(Marshal): %v\n%s", err, b)
		}
		b2, err := got.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("Marshal(Parse(b)) != b:\n%s\n%s", b, b2)
		}
		// Every file reassembles from its chunks to its size and hash.
		for name, f := range got.Files {
			var whole []byte
			for _, c := range f.Chunks {
				d := chunks[c.Name]
				if s := sha256.Sum256(d); hex.EncodeToString(s[:]) != c.SHA256 || int64(len(d)) != c.Size {
					t.Fatalf("chunk %s: hash or size differs", c.Name)
				}
				whole = append(whole, d...)
			}
			if s := sha256.Sum256(whole); hex.EncodeToString(s[:]) != f.SHA256 || int64(len(whole)) != f.Size {
				t.Fatalf("file %s: reassembled hash or size differs", name)
			}
		}
		if len(got.Files["decoder.onnx.data"].Chunks) != 4 || got.Files["decoder.onnx"].Chunks[0].Name != "decoder.onnx" {
			t.Fatalf("unexpected chunking: %+v", got.Files)
		}
		if c, file, ok := got.Chunk("decoder.onnx.data.part001"); !ok || file != "decoder.onnx.data" || c.Size != MinChunkSize {
			t.Fatalf("Chunk: %+v %q %v", c, file, ok)
		}
		if _, _, ok := got.Chunk("nope"); ok {
			t.Fatal("Chunk found a missing chunk")
		}
	}
}

func TestIdentityAndHints(t *testing.T) {
	m, _ := testPackage(t, false)
	id := m.Identity()
	want := payload.Model{Name: "tiny", Levels: []int{8, 8, 8, 5, 5, 5}, MaxTokens: 256}
	for i := range want.Digest {
		want.Digest[i] = 0xab
	}
	if !id.Equal(&want) || id.Name != "tiny" {
		t.Fatalf("Identity = %+v, want %+v", id, want)
	}
	if back := ModelFrom(id); back.Digest != m.Model.Digest || back.Name != "tiny" {
		t.Fatalf("ModelFrom = %+v", back)
	}
	h := m.Hints()
	if h == nil || h.Steps != 25 || h.Guidance == nil || *h.Guidance != 7.5 || !h.APG || h.Seed != nil {
		t.Fatalf("Hints = %+v", h)
	}
	if back := HintsFrom(h); back.Steps != 25 || *back.Guidance != 7.5 || !back.APG {
		t.Fatalf("HintsFrom = %+v", back)
	}
	m.DecodeHints = nil
	if m.Hints() != nil || HintsFrom(nil) != nil {
		t.Fatal("nil hints should stay nil")
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"hints": null`)) {
		t.Fatalf("no hints should marshal as null:\n%s", b)
	}
	if got, err := Parse(b); err != nil || got.DecodeHints != nil {
		t.Fatalf("Parse(hints null) = %v, %v", got, err)
	}
}

// edit parses the valid manifest as a generic JSON tree, lets fn change it and re-encodes it.
func edit(t *testing.T, fn func(map[string]any)) []byte {
	t.Helper()
	m, _ := testPackage(t, true)
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := json.Unmarshal(b, &tree); err != nil {
		t.Fatal(err)
	}
	fn(tree)
	out, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func obj(v any, keys ...string) map[string]any {
	m := v.(map[string]any)
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

func chunk0(tree map[string]any, file string) map[string]any {
	return obj(tree, "files", file)["chunks"].([]any)[0].(map[string]any)
}

// vector is one case of testdata/vectors.json: a manifest and what readers must say of it. The
// TypeScript reader (bindings/test/package.test.ts) checks the same file: one table, two
// implementations of the rules.
type vector struct {
	Name     string `json:"name"`
	Manifest string `json:"manifest"`
	Code     string `json:"code"`  // "" (valid), "manifest_invalid" or "unsupported_version"
	Field    string `json:"field"` // Error.Field
}

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the tables")

func codeOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrUnsupported):
		return "unsupported_version"
	}
	return "manifest_invalid"
}

func TestParseRefuses(t *testing.T) {
	valid, _ := testPackage(t, true)
	vb, err := valid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	vectors := []vector{{Name: "valid", Manifest: string(vb)}}
	defer func() {
		if t.Failed() {
			return
		}
		checkVectors(t, vectors)
	}()
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		kind error
		want string // in the message
	}{
		{"other format", func(m map[string]any) { m["format"] = "flextok-onnx" }, ErrInvalid, `format: "flextok-onnx"`},
		{"no format", func(m map[string]any) { delete(m, "format") }, ErrInvalid, "format: missing"},
		{"version 2", func(m map[string]any) { m["version"] = 2 }, ErrUnsupported, "version: 2"},
		{"version string", func(m map[string]any) { m["version"] = "1" }, ErrUnsupported, `version: "1"`},
		{"no version", func(m map[string]any) { delete(m, "version") }, ErrInvalid, "version: missing"},
		{"opset 0", func(m map[string]any) { m["opset"] = 0 }, ErrInvalid, "opset: 0"},
		{"no model", func(m map[string]any) { delete(m, "model") }, ErrInvalid, "model: missing"},
		{"empty name", func(m map[string]any) { obj(m, "model")["name"] = "" }, ErrInvalid, "model.name"},
		{"bad digest hex", func(m map[string]any) { obj(m, "model")["digest"] = strings.Repeat("zz", 32) }, ErrInvalid, "model.digest"},
		{"upper digest", func(m map[string]any) { obj(m, "model")["digest"] = strings.Repeat("AB", 32) }, ErrInvalid, "model.digest"},
		{"short digest", func(m map[string]any) { obj(m, "model")["digest"] = "abcd" }, ErrInvalid, "model.digest"},
		{"bad levels", func(m map[string]any) { obj(m, "model")["fsq_levels"] = []int{1} }, ErrInvalid, "model.fsq_levels"},
		{"max tokens 0", func(m map[string]any) { obj(m, "model")["max_tokens"] = 0 }, ErrInvalid, "model.max_tokens"},
		{"negative steps", func(m map[string]any) { obj(m, "hints")["steps"] = -1 }, ErrInvalid, "hints.steps"},
		{"zero guidance", func(m map[string]any) { obj(m, "hints")["guidance"] = 0 }, ErrInvalid, "hints.guidance"},
		{"huge seed", func(m map[string]any) { obj(m, "hints")["seed"] = uint64(1) << 60 }, ErrInvalid, "hints.seed"},
		{"hints string", func(m map[string]any) { m["hints"] = "fast" }, ErrInvalid, "hints"},
		{"no sizes", func(m map[string]any) { delete(m, "sizes") }, ErrInvalid, "sizes: missing"},
		{"zero height", func(m map[string]any) { obj(m, "sizes")["image_height"] = 0 }, ErrInvalid, "sizes.image_height"},
		{"tokens differ", func(m map[string]any) { obj(m, "sizes")["tokens"] = 128 }, ErrInvalid, "sizes.tokens: 128, but model.max_tokens is 256"},
		{"fsq dims differ", func(m map[string]any) { obj(m, "sizes")["fsq_dims"] = 5 }, ErrInvalid, "sizes.fsq_dims"},
		{"fp16 flag without graph", func(m map[string]any) { delete(obj(m, "graphs"), RoleDecoderFP16) }, ErrInvalid, "sizes.decoder_fp16"},
		{"no decoder", func(m map[string]any) { delete(obj(m, "graphs"), RoleDecoder) }, ErrInvalid, `no "decoder" graph`},
		{"no vae", func(m map[string]any) { delete(obj(m, "graphs"), RoleVAEDecoder) }, ErrInvalid, `no "vae_decoder" graph`},
		{"unknown role", func(m map[string]any) {
			obj(m, "graphs")["encoder"] = map[string]any{"graph": "decoder.onnx", "data": "decoder.onnx.data", "precision": "fp32"}
		}, ErrInvalid, `graphs["encoder"]: unknown role`},
		{"graph null", func(m map[string]any) { obj(m, "graphs")[RoleDecoder] = nil }, ErrInvalid, `graphs["decoder"]: null`},
		{"wrong precision", func(m map[string]any) { obj(m, "graphs", RoleDecoderFP16)["precision"] = "fp32" }, ErrInvalid, `graphs["decoder_fp16"].precision`},
		{"missing graph file", func(m map[string]any) { delete(obj(m, "files"), "vae_decoder.onnx") }, ErrInvalid, `graphs["vae_decoder"].graph: "vae_decoder.onnx" is not in files`},
		{"missing data file", func(m map[string]any) { obj(m, "graphs", RoleDecoder)["data"] = "other.data" }, ErrInvalid, `graphs["decoder"].data: "other.data" is not in files`},
		{"graph is data", func(m map[string]any) { obj(m, "graphs", RoleDecoder)["data"] = "decoder.onnx" }, ErrInvalid, "is also the graph"},
		{"no files", func(m map[string]any) { m["files"] = map[string]any{} }, ErrInvalid, "files: 0 files"},
		{"file null", func(m map[string]any) { obj(m, "files")["decoder.onnx"] = nil }, ErrInvalid, `files["decoder.onnx"]: null`},
		{"slash in name", func(m map[string]any) { moveFile(m, "decoder.onnx", "../decoder.onnx") }, ErrInvalid, `files["../decoder.onnx"]: name contains`},
		{"dotdot in name", func(m map[string]any) { moveFile(m, "decoder.onnx", "a..b") }, ErrInvalid, `name contains ".."`},
		{"hidden name", func(m map[string]any) { moveFile(m, "decoder.onnx", ".decoder.onnx") }, ErrInvalid, "starts with '.'"},
		{"backslash", func(m map[string]any) { moveFile(m, "decoder.onnx", `a\b`) }, ErrInvalid, "name contains"},
		{"control char", func(m map[string]any) { moveFile(m, "decoder.onnx", "a\nb") }, ErrInvalid, "control character"},
		{"manifest name", func(m map[string]any) { moveFile(m, "decoder.onnx", "manifest.json") }, ErrInvalid, "the manifest's"},
		{"bad file hash", func(m map[string]any) { obj(m, "files", "decoder.onnx.data")["sha256"] = "00" }, ErrInvalid, `files["decoder.onnx.data"].sha256`},
		{"negative size", func(m map[string]any) { obj(m, "files", "decoder.onnx.data")["size"] = -1 }, ErrInvalid, `files["decoder.onnx.data"].size`},
		{"size mismatch", func(m map[string]any) {
			f := obj(m, "files", "decoder.onnx.data")
			f["size"] = f["size"].(float64) + 1
		}, ErrInvalid, "chunk sizes sum to"},
		{"chunk too big", func(m map[string]any) { chunk0(m, "decoder.onnx.data")["size"] = 1e9 }, ErrInvalid, "chunk sizes sum to"},
		{"no chunks", func(m map[string]any) { obj(m, "files", "decoder.onnx")["chunks"] = []any{} }, ErrInvalid, `files["decoder.onnx"].chunks: 0 chunks`},
		{"chunk misnamed", func(m map[string]any) { chunk0(m, "decoder.onnx.data")["name"] = "x.part000" }, ErrInvalid, `chunks[0].name: "x.part000" (want "decoder.onnx.data.part000")`},
		{"chunk path", func(m map[string]any) { chunk0(m, "decoder.onnx")["name"] = "../decoder.onnx" }, ErrInvalid, `chunks[0].name`},
		{"chunk bad hash", func(m map[string]any) { chunk0(m, "decoder.onnx.data")["sha256"] = strings.Repeat("g", 64) }, ErrInvalid, "chunks[0].sha256"},
		{"chunk zero size", func(m map[string]any) { chunk0(m, "decoder.onnx.data")["size"] = 0 }, ErrInvalid, "chunks[0].size"},
		{"single chunk hash differs", func(m map[string]any) { chunk0(m, "decoder.onnx")["sha256"] = strings.Repeat("0", 64) }, ErrInvalid, "its only chunk"},
		{"wrong type", func(m map[string]any) { m["opset"] = "17" }, ErrInvalid, "opset: JSON string"},
		{"wrong nested type", func(m map[string]any) { obj(m, "model")["max_tokens"] = "many" }, ErrInvalid, "model.max_tokens: JSON string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := edit(t, tc.edit)
			m, err := Parse(b)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", m)
			}
			var pe *Error
			if !errors.As(err, &pe) || !errors.Is(err, tc.kind) {
				t.Fatalf("error %v (%T): want an *Error wrapping %v", err, err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			vectors = append(vectors, vector{Name: tc.name, Manifest: string(b), Code: codeOf(err), Field: pe.Field})
		})
	}
}

// checkVectors compares the vectors with testdata/vectors.json (-update rewrites it).
func checkVectors(t *testing.T, vectors []vector) {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(vectors); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "vectors.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	old, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(old, b.Bytes()) {
		t.Fatalf("%s is not what the tables give (%v): run go test ./sdk/webpkg -run TestParseRefuses -update", path, err)
	}
}

// moveFile renames a file in the tree (its single chunk too) and the graph that names it.
func moveFile(m map[string]any, from, to string) {
	files := obj(m, "files")
	f := files[from].(map[string]any)
	delete(files, from)
	files[to] = f
	f["chunks"].([]any)[0].(map[string]any)["name"] = to
	for _, g := range obj(m, "graphs") {
		g := g.(map[string]any)
		if g["graph"] == from {
			g["graph"] = to
		}
	}
}

func TestParseRefusesJunk(t *testing.T) {
	for _, in := range []string{"", "null", "[]", "{", `{"format": "flextok-web", "version": 1}`, strings.Repeat(" ", MaxManifestBytes+1)} {
		if _, err := Parse([]byte(in)); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%.40q) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestUnknownKeysIgnored(t *testing.T) {
	b := edit(t, func(m map[string]any) {
		m["future"] = 1
		obj(m, "model")["extra"] = "x"
	})
	if _, err := Parse(b); err != nil {
		t.Fatal(err)
	}
}

func TestSplit(t *testing.T) {
	data := make([]byte, 3*MinChunkSize+5)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var names []string
	var joined []byte
	f, err := Split("w.data", bytes.NewReader(data), int64(len(data)), MinChunkSize, func(c string, b []byte) error {
		names = append(names, c)
		joined = append(joined, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "w.data.part000,w.data.part001,w.data.part002,w.data.part003" || !bytes.Equal(joined, data) {
		t.Fatalf("chunks %v", names)
	}
	if s := sha256.Sum256(data); f.SHA256 != hex.EncodeToString(s[:]) || f.Size != int64(len(data)) || f.Chunks[3].Size != 5 {
		t.Fatalf("file %+v", f)
	}
	// Exactly one chunk's worth, and an empty file: one chunk named as the file.
	for _, n := range []int{MinChunkSize, 0} {
		f, err := Split("w", bytes.NewReader(data[:n]), int64(n), MinChunkSize, func(string, []byte) error { return nil })
		if err != nil || len(f.Chunks) != 1 || f.Chunks[0].Name != "w" || f.Chunks[0].SHA256 != f.SHA256 {
			t.Fatalf("Split of %d bytes: %+v %v", n, f, err)
		}
	}
	put := func(string, []byte) error { return nil }
	for _, tc := range []struct {
		name      string
		r         io.Reader
		size, csz int64
		want      string
	}{
		{"short", bytes.NewReader(data[:10]), 20, MinChunkSize, "reading chunk 0"},
		{"long", bytes.NewReader(data[:30]), 20, MinChunkSize, "more than 20 bytes"},
		{"tiny chunks", bytes.NewReader(data), int64(len(data)), 10, "chunk size 10"},
		{"too many chunks", bytes.NewReader(nil), MinChunkSize * (MaxChunks + 1), MinChunkSize, "use a larger chunk size"},
	} {
		if _, err := Split("w", tc.r, tc.size, tc.csz, put); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := Split("../w", bytes.NewReader(nil), 0, MinChunkSize, put); err == nil {
		t.Error("Split accepted a path")
	}
	boom := errors.New("boom")
	if _, err := Split("w", bytes.NewReader(data), int64(len(data)), MinChunkSize, func(string, []byte) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("put's error: %v", err)
	}
}

func TestTotalSize(t *testing.T) {
	m, chunks := testPackage(t, true)
	var n int64
	for _, c := range chunks {
		n += int64(len(c))
	}
	if m.TotalSize() != n {
		t.Fatalf("TotalSize %d, chunks hold %d", m.TotalSize(), n)
	}
}
