package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestImageSize: the top-level "image_size" states the size a model runs at when its tables
// cover more; sizes outside what the tables cover are refused.
func TestImageSize(t *testing.T) {
	dir := filepath.Join("..", "..", "conformance", "testdata", "official", "c1_w32_zero_e2")
	cfgJSON, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Skip(err)
	}
	vaeJSON, err := os.ReadFile(filepath.Join(dir, "vae", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfigJSON(cfgJSON, vaeJSON)
	if err != nil {
		t.Fatal(err)
	}
	g := c.Geometry()
	if g.Default != [2]int{32, 32} || g.Max() != [2]int{32, 32} || g.Factor != 2 || g.Patch != [2]int{2, 2} {
		t.Fatalf("c1 geometry %+v", g)
	}
	with := func(v any) ([]byte, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		// Prepended, so that the order of the other keys (module order) stays.
		i := bytes.IndexByte(cfgJSON, '{')
		return append(append([]byte(`{"image_size": `), b...), append([]byte(","), cfgJSON[i+1:]...)...), nil
	}
	for _, tc := range []struct {
		v    any
		want [2]int
		ok   bool
	}{
		{24, [2]int{24, 24}, true},
		{[]int{16, 28}, [2]int{16, 28}, true},
		{32, [2]int{32, 32}, true},
		{30, [2]int{}, false},        // not a whole number of 4-pixel patches
		{36, [2]int{}, false},        // beyond the tables
		{0, [2]int{}, false},         // not a size
		{[]int{16}, [2]int{}, false}, // neither an int nor [h, w]
		{"24", [2]int{}, false},      // a string
		{[]int{16, 24, 8}, [2]int{}, false},
	} {
		b, err := with(tc.v)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseConfigJSON(b, vaeJSON)
		if !tc.ok {
			if !errors.Is(err, ErrConfig) {
				t.Errorf("image_size %v: err %v, want ErrConfig", tc.v, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("image_size %v: %v", tc.v, err)
			continue
		}
		if g := c.Geometry(); g.Default != tc.want {
			t.Errorf("image_size %v: default %v, want %v", tc.v, g.Default, tc.want)
		}
	}
	if h, w, err := g.Resolve(0); err != nil || h != 32 || w != 32 {
		t.Errorf("Resolve(0) = %d, %d, %v", h, w, err)
	}
	if _, _, err := g.Resolve(20); err != nil {
		t.Errorf("Resolve(20): %v", err)
	}
	for _, s := range []int{-1, 2, 33, 64} {
		if _, _, err := g.Resolve(s); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Resolve(%d): %v, want ErrUnsupported", s, err)
		}
	}
}
