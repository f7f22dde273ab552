package conformance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/payload"
)

var update = flag.Bool("update", false, "rewrite golden files")

const vectorDir = "testdata/payload"

// vector is one entry of testdata/payload/manifest.json.
type vector struct {
	Name   string `json:"name"`
	Doc    string `json:"doc"`
	Kind   string `json:"kind"`   // "tokens" (payload.Decode) or "stream" (payload.DecodeStream)
	Input  string `json:"input"`  // msgpack file
	SHA256 string `json:"sha256"` // of the input
	View   string `json:"view,omitempty"`
	Error  *struct {
		Code  string `json:"code"`
		Field string `json:"field"`
	} `json:"error,omitempty"`
	Expect *struct { // decode with Options.Expect set to this model
		Name   string `json:"name"`
		Digest string `json:"digest"` // hex
	} `json:"expect_model,omitempty"`
}

func vecModel() payload.Model {
	return payload.Model{Name: "flextok_d18_d28_in1k", Digest: sha256.Sum256([]byte("flextok weights")), Levels: []int{8, 8, 8, 5, 5, 5}, MaxTokens: 256}
}

func vecPayload(n int) *payload.Payload {
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = uint32(i*7919+13) % 64000
	}
	return &payload.Payload{Model: vecModel(), Image: payload.Image{Height: 256, Width: 256, Resize: "catmull-rom", Crop: "center", SourceHeight: 375, SourceWidth: 500}, IDs: ids}
}

func enc(t *testing.T, p *payload.Payload) []byte {
	t.Helper()
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func replace(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%q not in bytes", old)
	}
	return bytes.Replace(bytes.Clone(b), []byte(old), []byte(new), 1)
}

// buildVectors makes every case from code; -update writes them, otherwise files are compared.
func buildVectors(t *testing.T) ([]vector, map[string][]byte) {
	files := map[string][]byte{}
	var vs []vector
	add := func(name, kind, doc string, data []byte, code, field string) *vector {
		v := vector{Name: name, Doc: doc, Kind: kind, Input: name + ".msgpack"}
		sum := sha256.Sum256(data)
		v.SHA256 = hex.EncodeToString(sum[:])
		files[v.Input] = data
		if code != "" {
			v.Error = &struct {
				Code  string `json:"code"`
				Field string `json:"field"`
			}{code, field}
		} else {
			v.View = name + ".json"
		}
		vs = append(vs, v)
		return &vs[len(vs)-1]
	}
	one := enc(t, vecPayload(1))
	p32 := enc(t, vecPayload(32))
	add("tokens_1", "tokens", "one token: the coarsest description", one, "", "")
	add("tokens_256", "tokens", "all 256 tokens", enc(t, vecPayload(256)), "", "")
	full := vecPayload(32)
	class, g, seed := 207, float32(7.5), uint64(42)
	full.Cond = &payload.Cond{Class: &class, Prompt: "a golden retriever on grass"}
	full.Hints = &payload.Hints{Steps: 20, Guidance: &g, APG: true, Seed: &seed}
	add("tokens_cond_hints", "tokens", "conditioning and decode hints", enc(t, full), "", "")
	video := vecPayload(12)
	video.Frames = 3
	add("tokens_frames", "tokens", "a leading time axis: 3 frames of 4 tokens", enc(t, video), "", "")
	wide := vecPayload(3)
	wide.Model.Levels = []int{8, 8, 8, 8, 8, 8}
	wide.IDs = []uint32{0, 70000, 262143}
	add("tokens_wide_codebook", "tokens", "a 262,144-entry codebook: 4-byte ids", enc(t, wide), "", "")
	s, err := payload.Split(full, []int{1, 1, 2, 4, 8})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := s.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	add("stream_32", "stream", "header then chunks of 1,1,2,4,8,16 tokens", sb, "", "")
	hb, _ := s.Header.AppendBinary(nil)
	add("stream_header_only", "stream", "a stream before any chunk", hb, "", "")

	add("err_empty", "tokens", "empty input", []byte{}, "truncated", "")
	add("err_not_map", "tokens", "top level is an array", []byte{0x92, 1, 2}, "format", "")
	add("err_truncated", "tokens", "cut inside the ids", p32[:len(p32)-5], "truncated", "ids")
	add("err_trailing", "tokens", "one byte after the payload", append(bytes.Clone(p32), 0xc0), "trailing", "")
	add("err_version", "tokens", "unknown major version 2", replace(t, p32, "version\x92\x01", "version\x92\x02"), "version", "version")
	add("err_wrong_type", "tokens", "count is a string", replace(t, p32, "count\x20", "count\xa1x"), "type", "count")
	add("err_id_range", "tokens", "an id of 64000 in a 64,000-entry codebook", replace(t, one, "ids\xc4\x02\x0d\x00", "ids\xc4\x02\x00\xfa"), "range", "ids")
	long := vecPayload(257)
	long.Model.MaxTokens = 300
	add("err_too_long", "tokens", "257 tokens for a model of 256", replace(t, enc(t, long), "max_tokens\xcd\x01\x2c", "max_tokens\xcd\x01\x00"), "too_long", "count")
	add("err_missing", "tokens", "model without max_tokens", replace(t, one, "max_tokens", "max_tokenz"), "missing", "model.max_tokens")
	add("err_duplicate", "tokens", "image.height twice", replace(t, one, "resize", "height"), "duplicate", "image.height")
	add("err_stream_as_tokens", "tokens", "a stream given where a whole payload is expected", sb, "format", "format")
	v := add("err_model_mismatch", "tokens", "tokens of another model", p32, "model_mismatch", "model")
	other := vecModel()
	v.Expect = &struct {
		Name   string `json:"name"`
		Digest string `json:"digest"`
	}{other.Name, hex.EncodeToString(sha256.New().Sum(nil))}
	add("err_stream_gap", "stream", "the second chunk is missing", streamWithout(t, s, 1), "stream", "chunks[1].start")
	return vs, files
}

// streamWithout encodes s without chunk i.
func streamWithout(t *testing.T, s *payload.Stream, i int) []byte {
	t.Helper()
	b, err := s.Header.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	for j := range s.Chunks {
		if j != i {
			if b, err = s.Chunks[j].AppendBinary(b, &s.Header); err != nil {
				t.Fatal(err)
			}
		}
	}
	return b
}

func view(t *testing.T, v vector, data []byte) ([]byte, error) {
	t.Helper()
	opt := payload.Options{}
	if v.Expect != nil {
		m := vecModel()
		m.Name = v.Expect.Name
		d, err := hex.DecodeString(v.Expect.Digest)
		if err != nil || len(d) != 32 {
			t.Fatalf("%s: bad expect_model digest", v.Name)
		}
		copy(m.Digest[:], d)
		opt.Expect = &m
	}
	if v.Kind == "stream" {
		s, err := payload.DecodeStream(data, opt)
		if err != nil {
			return nil, err
		}
		return s.JSON()
	}
	var p payload.Payload
	if err := payload.Decode(data, &p, opt); err != nil {
		return nil, err
	}
	return p.JSON()
}

func TestPayloadVectors(t *testing.T) {
	vs, files := buildVectors(t)
	if *update {
		for _, v := range vs {
			if v.View != "" {
				j, err := view(t, v, files[v.Input])
				if err != nil {
					t.Fatalf("%s: %v", v.Name, err)
				}
				files[v.View] = j
			}
		}
		m, _ := json.MarshalIndent(vs, "", "  ")
		files["manifest.json"] = append(m, '\n')
		_ = os.RemoveAll(vectorDir)
		_ = os.MkdirAll(vectorDir, 0o755)
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(vectorDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got []vector
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(vs) {
		t.Fatalf("manifest has %d cases, code builds %d: run with -update and review", len(got), len(vs))
	}
	for i, v := range got {
		t.Run(v.Name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(vectorDir, v.Input))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, files[vs[i].Input]) {
				t.Fatalf("encoder output differs from %s: the canonical bytes changed", v.Input)
			}
			sum := sha256.Sum256(data)
			if hex.EncodeToString(sum[:]) != v.SHA256 {
				t.Fatalf("sha256 mismatch for %s", v.Input)
			}
			j, err := view(t, v, data)
			if v.Error != nil {
				var pe *payload.Error
				if !errors.As(err, &pe) || pe.Code() != v.Error.Code || pe.Field != v.Error.Field {
					t.Fatalf("error = %v, want code %q field %q", err, v.Error.Code, v.Error.Field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(vectorDir, v.View))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(j, want) {
				t.Fatalf("JSON view differs from %s:\n%s", v.View, j)
			}
		})
	}
}
