package conformance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/conformance/arfixture"
	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/service"
)

// The AR generation conformance: one script (open the default tokenizer, ar_open the
// arfixture model beside it, generate with CFG, top-k, top-p and a seed, then greedy, then
// refusals) run natively, as the GOOS=wasip1 module under wazero and as the GOOS=js module
// under Node. generate_next asks for "max" 1 token per call (a larger max takes what is ready,
// which depends on timing), so every response — not only the
// final payloads — is determined by the request and must be byte-identical on every host.
// testdata/ar/generate_golden.json pins the fixture's sha256 and the payloads' (refresh with
// -update and review). bindings/test/ar.test.ts checks the TypeScript package against the
// same golden file.

const arGolden = "testdata/ar/generate_golden.json"

type arGoldenFile struct {
	Config   string                `json:"config_sha256"`
	Weights  string                `json:"weights_sha256"`
	Payloads map[string][]string   `json:"payloads_sha256"` // step name → one per sample
	IDs      map[string][][]uint32 `json:"ids"`
}

func arScript(t *testing.T) (script []step, cfg, w []byte) {
	cfg, w, err := arfixture.Build()
	if err != nil {
		t.Fatal(err)
	}
	tiny, err := os.ReadFile("testdata/ar/tiny/config.json")
	if err != nil {
		t.Fatal(err)
	}
	tinyW, err := os.ReadFile("testdata/ar/tiny/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	add := func(name string, m M) { script = append(script, step{name, mp(t, m)}) }
	add("open", M{"op": "open"})                                                 // handle 1
	add("ar_open", M{"op": "ar_open", "handle": 1, "config": cfg, "weights": w}) // handle 2
	add("generate_open_cfg", M{"op": "generate_open", "ar": 2, "class": "triangle", "n": 2, "k": 32, "seed": 42,
		"cfg": 3.0, "temperature": 1.0, "top_k": 200, "top_p": 0.9}) // handle 3
	for i := 0; i < 32; i++ {
		add("next_cfg_"+itoa(i), M{"op": "generate_next", "generation": 3, "max": 1})
	}
	add("generate_open_greedy", M{"op": "generate_open", "ar": 2, "class": 0, "k": 8, "greedy": true}) // handle 4
	for i := 0; i < 8; i++ {
		add("next_greedy_"+itoa(i), M{"op": "generate_next", "generation": 4, "max": 1})
	}
	add("generate_close", M{"op": "generate_close", "generation": 4})
	add("err_tokenizer_mismatch", M{"op": "ar_open", "handle": 1, "config": tiny, "weights": tinyW})
	add("err_unknown_class", M{"op": "generate_open", "ar": 2, "class": "hexagon"})
	add("err_top_p", M{"op": "generate_open", "ar": 2, "class": 1, "top_p": 1.5})
	add("err_closed", M{"op": "generate_next", "generation": 4})
	return script, cfg, w
}

func hexsum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestARGenerateExecutors(t *testing.T) {
	script, cfg, w := arScript(t)
	d := models.Default()
	svc := service.New(service.Options{Default: &service.Checkpoint{Weights: d.Weights, Config: d.Config, VAEConfig: d.VAEConfig}})
	var raw [][]byte
	for _, s := range script {
		raw = append(raw, svc.Handle(s.Req))
	}
	native := make([]M, len(script))
	got := arGoldenFile{Config: hexsum(cfg), Weights: hexsum(w), Payloads: map[string][]string{}, IDs: map[string][][]uint32{}}
	for i, s := range script {
		native[i] = decodeResp(t, s.Name, raw[i])
		wantOK := !bytes.HasPrefix([]byte(s.Name), []byte("err_"))
		if native[i]["ok"] != wantOK {
			t.Fatalf("native %s: ok = %v, want %v (%v)", s.Name, native[i]["ok"], wantOK, native[i]["error"])
		}
		if ps, ok := native[i]["payloads"].([]any); ok && len(ps) > 0 {
			for _, p := range ps {
				got.Payloads[s.Name] = append(got.Payloads[s.Name], hexsum(p.([]byte)))
			}
		}
	}
	// The ids of each generation, from the streamed responses.
	for i, s := range script {
		ids, ok := native[i]["ids"].([]any)
		if !ok {
			continue
		}
		key := "cfg"
		if strings.HasPrefix(s.Name, "next_greedy") {
			key = "greedy"
		}
		for j, v := range ids {
			if len(got.IDs[key]) <= j {
				got.IDs[key] = append(got.IDs[key], nil)
			}
			for _, x := range v.([]any) {
				got.IDs[key][j] = append(got.IDs[key][j], uint32(toInt(x)))
			}
		}
	}
	if len(got.IDs["cfg"]) != 2 || len(got.IDs["cfg"][0]) != 32 || len(got.IDs["greedy"][0]) != 8 {
		t.Fatalf("ids: %v", got.IDs)
	}
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(arGolden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gb, err := os.ReadFile(arGolden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var golden arGoldenFile
	if err := json.Unmarshal(gb, &golden); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(golden, got) {
		t.Fatalf("native generation differs from %s (fixture %s/%s, want %s/%s); if sdk/ar's numerics changed on purpose, rerun with -update and review",
			arGolden, got.Config[:8], got.Weights[:8], golden.Config[:8], golden.Weights[:8])
	}

	compare := func(t *testing.T, exec string, resps [][]byte) {
		for i, s := range script {
			if !bytes.Equal(resps[i], raw[i]) {
				t.Fatalf("%s %s: response differs from native\nnative %v\n%s %v", exec, s.Name, native[i], exec, decodeResp(t, s.Name, resps[i]))
			}
		}
	}

	t.Run("wasip1", func(t *testing.T) {
		inst := wasip1Instance(t)
		resps := make([][]byte, len(script))
		for i, s := range script {
			if resps[i], err = inst.Handle(s.Req); err != nil {
				t.Fatalf("%s: %v", s.Name, err)
			}
		}
		compare(t, "wasip1", resps)
	})

	t.Run("js", func(t *testing.T) {
		wasm, execJS := buildJS(t)
		reqs := make([][]byte, len(script))
		for i, s := range script {
			reqs[i] = s.Req
		}
		resps := jsResponses(t, wasm, execJS, reqs)
		compare(t, "js", resps)
	})
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return int64(x)
	}
	return -1
}

// TestARDefaultModelWasip1: the GOOS=wasip1 module embeds the default AR model, so a host
// generates with "ar_open" and no files; its responses equal the native service's with
// Options.DefaultAR = models.DefaultAR() byte for byte. (The GOOS=js module does not embed it:
// the TypeScript package sends the files, bindings/test/ar.test.ts.)
func TestARDefaultModelWasip1(t *testing.T) {
	var script []step
	add := func(name string, m M) { script = append(script, step{name, mp(t, m)}) }
	add("open", M{"op": "open"})
	add("ar_open", M{"op": "ar_open", "handle": 1})
	add("generate_open", M{"op": "generate_open", "ar": 2, "class": "star", "n": 2, "k": 8, "seed": 5})
	for i := range 8 {
		add("next_"+itoa(i), M{"op": "generate_next", "generation": 3, "max": 1})
	}
	d, a := models.Default(), models.DefaultAR()
	svc := service.New(service.Options{Default: &service.Checkpoint{Weights: d.Weights, Config: d.Config, VAEConfig: d.VAEConfig},
		DefaultAR: &service.ARCheckpoint{Config: a.Config, Weights: a.Weights}})
	defer svc.Close()
	native := make([][]byte, len(script))
	for i, s := range script {
		native[i] = svc.Handle(s.Req)
		if r := decodeResp(t, s.Name, native[i]); r["ok"] != true {
			t.Fatalf("native %s: %v", s.Name, r["error"])
		}
	}
	if r := decodeResp(t, "next_7", native[len(native)-1]); r["done"] != true {
		t.Fatalf("not done after 8 tokens: %v", r)
	}
	inst := wasip1Instance(t)
	for i, s := range script {
		got, err := inst.Handle(s.Req)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if !bytes.Equal(got, native[i]) {
			t.Fatalf("wasip1 %s: response differs from native\nnative %v\nwasip1 %v", s.Name, decodeResp(t, s.Name, native[i]), decodeResp(t, s.Name, got))
		}
	}
}
