package ar

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig: ParseConfig never panics, and what it accepts is a checked config.
func FuzzParseConfig(f *testing.F) {
	b, err := os.ReadFile(filepath.Join(tinyDir, "config.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		f.Fatal(err)
	}
	delete(m, "classes")
	delete(m, "sampling_hints")
	m["ffn_dim_multiplier"] = 1.5
	m["ffn_hidden"] = 160
	v, _ := json.Marshal(m)
	f.Add(v)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":"flextok-ar","format_version":1.0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error not ErrConfig: %v", err)
			}
			return
		}
		if c.Dim%c.Heads != 0 || c.Heads%c.KVHeads != 0 || c.VocabSize != c.Tokenizer.CodebookSize || c.BlockSize != c.Tokenizer.Registers || c.Params() > MaxParams {
			t.Fatalf("accepted an inconsistent config %+v", c)
		}
	})
}
