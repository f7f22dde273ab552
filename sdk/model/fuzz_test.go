package model

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// FuzzParseConfigJSON: any config.json and vae/config.json either parse into a config whose
// derived quantities (expected tensors, codebook size) can be computed, or fail with an error
// of this package's; never a panic.
func FuzzParseConfigJSON(f *testing.F) {
	for _, dir := range []string{"testdata/tiny", "../../models/default/", "../../conformance/testdata/official/c2_w64_learned_t1/"} {
		cfgName, vaeName := dir+"config.json", dir+"vae/config.json"
		if dir == "testdata/tiny" {
			cfgName, vaeName = "testdata/tiny_config.json", "testdata/tiny_vae_config.json"
		}
		cfg, err1 := os.ReadFile(cfgName)
		vae, err2 := os.ReadFile(vaeName)
		if err1 != nil || err2 != nil {
			f.Fatal(err1, err2)
		}
		f.Add(cfg, vae)
	}
	f.Fuzz(func(t *testing.T, cfg, vae []byte) {
		c, err := ParseConfigJSON(cfg, vae)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "flextok/model: ") {
				t.Fatalf("error without the package prefix: %v", err)
			}
			return
		}
		checkParsed(t, "fuzzed config", c)
	})
}

// TestConfigNumbers replaces every number of both test configs, one at a time, by values a
// corrupt file might hold (0, -1, huge, fractional, beyond float64's ints): each config then
// parses or fails with an error of this package, never panics, and a config that parses asks
// for a bounded number of tensors (depth and layer counts are limited before any loop runs).
func TestConfigNumbers(t *testing.T) {
	cfg, vae := readTestdata(t)
	number := regexp.MustCompile(`"[^"]*"\s*:\s*(-?[0-9][0-9.eE+-]*)`)
	for _, which := range []string{"config.json", "vae/config.json"} {
		src := cfg
		if which != "config.json" {
			src = vae
		}
		for _, loc := range number.FindAllSubmatchIndex(src, -1) {
			for _, val := range []string{"0", "-1", "2.5", "100000", "1000000000000", "1e300"} {
				mut := append(append(append([]byte{}, src[:loc[2]]...), val...), src[loc[3]:]...)
				c, v := cfg, vae
				if which == "config.json" {
					c = mut
				} else {
					v = mut
				}
				what := fmt.Sprintf("%s %s %s", which, src[loc[0]:loc[2]], val)
				func() {
					defer func() {
						if e := recover(); e != nil {
							t.Errorf("%s: panic: %v", what, e)
						}
					}()
					parsed, err := ParseConfigJSON(c, v)
					if err != nil {
						if !strings.HasPrefix(err.Error(), "flextok/model: ") {
							t.Errorf("%s: error without the package prefix: %v", what, err)
						}
						return
					}
					checkParsed(t, what, parsed)
				}()
			}
		}
	}
}

// checkParsed checks what a parsed config promises: a codebook, at most 100,000 expected
// tensors (what a released model needs, many times over), all of positive shape.
func checkParsed(t *testing.T, what string, c *Config) {
	t.Helper()
	if c.CodebookSize() <= 0 {
		t.Errorf("%s: codebook size %d", what, c.CodebookSize())
	}
	ts := c.ExpectedTensors()
	if len(ts) > 100000 {
		t.Errorf("%s: accepted, and asks for %d tensors", what, len(ts))
		return
	}
	for _, x := range ts {
		for _, d := range x.Shape {
			if d <= 0 {
				t.Errorf("%s: accepted, and %s has the shape %v", what, x.Name, x.Shape)
				return
			}
		}
	}
}
