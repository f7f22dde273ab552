package service

import (
	"context"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/flextok-sdk/flextok/conformance/arfixture"
	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

var (
	arOnce            sync.Once
	arConfig, arW     []byte
	arErr             error
	tinyConfig, tinyW []byte
)

// arFixture is the conformance AR fixture (a random-weight AR model for the default tokenizer)
// and the tiny AR checkpoint of conformance/testdata/ar (made for a fictional tokenizer).
func arFixture(t testing.TB) {
	t.Helper()
	arOnce.Do(func() {
		arConfig, arW, arErr = arfixture.Build()
		if arErr != nil {
			return
		}
		if tinyConfig, arErr = os.ReadFile("../../conformance/testdata/ar/tiny/config.json"); arErr != nil {
			return
		}
		tinyW, arErr = os.ReadFile("../../conformance/testdata/ar/tiny/model.safetensors")
	})
	if arErr != nil {
		t.Fatal(arErr)
	}
}

func defaultService() *Service {
	d := models.Default()
	return New(Options{Default: &Checkpoint{Weights: d.Weights, Config: d.Config, VAEConfig: d.VAEConfig}})
}

func openAR(t testing.TB, s *Service) (tok, arh int64) {
	t.Helper()
	arFixture(t)
	tok = num(call(t, s, M{"op": "open"})["handle"])
	r := call(t, s, M{"op": "ar_open", "handle": tok, "config": arConfig, "weights": arW})
	if r["max_tokens"] == nil || num(r["num_classes"]) != 3 || r["cfg"] != true {
		t.Fatalf("ar_open: %v", r)
	}
	return tok, num(r["ar"])
}

// drain calls generate_next until done and returns every sample's ids, the responses' chunks
// reassembled as streams, and the final payloads.
func drain(t *testing.T, s *Service, open M, max int64) (ids [][]uint32, streams []payload.Stream, ps [][]byte) {
	t.Helper()
	gh := num(open["generation"])
	for _, hb := range open["headers"].([]any) {
		var st payload.Stream
		if err := payload.DecodeHeader(hb.([]byte), &st.Header, payload.Options{}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	for calls := 0; ; calls++ {
		req := M{"op": "generate_next", "generation": gh}
		if max > 0 {
			req["max"] = max
		}
		r := call(t, s, req)
		cnt := int(num(r["count"]))
		if max > 0 && cnt > int(max) {
			t.Fatalf("count %d > max %d", cnt, max)
		}
		rids := r["ids"].([]any)
		if ids == nil {
			ids = make([][]uint32, len(rids))
		}
		for i, v := range rids {
			for _, x := range v.([]any) {
				ids[i] = append(ids[i], uint32(num(x)))
			}
		}
		for i, c := range r["chunks"].([]any) {
			var ch payload.Chunk
			if err := payload.DecodeChunk(c.([]byte), &ch, &streams[i].Header, payload.Options{}); err != nil {
				t.Fatal(err)
			}
			if err := streams[i].Add(ch); err != nil {
				t.Fatal(err)
			}
		}
		if r["done"] == true {
			for _, p := range r["payloads"].([]any) {
				ps = append(ps, p.([]byte))
			}
			return ids, streams, ps
		}
		if cnt == 0 || calls > 1000 {
			t.Fatalf("generate_next: %v", r)
		}
	}
}

func TestGenerate(t *testing.T) {
	s := defaultService()
	_, arh := openAR(t, s)
	const n, k, seed = 2, 12, 7
	for _, max := range []int64{0, 1, 5} {
		r := call(t, s, M{"op": "generate_open", "ar": arh, "class": "square", "n": n, "k": k, "seed": seed,
			"cfg": 2.5, "temperature": 0.9, "top_k": 100, "top_p": 0.95})
		if num(r["class"]) != 1 || num(r["n"]) != n || num(r["k"]) != k {
			t.Fatalf("generate_open: %v", r)
		}
		ids, streams, ps := drain(t, s, r, max)

		// The same request straight to sdk/ar gives the same ids and payloads.
		m, err := ar.LoadBytes(arConfig, arW)
		if err != nil {
			t.Fatal(err)
		}
		e, err := models.LoadDefault(engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		g, err := ar.NewGenerator(m, ar.Options{Tokenizer: e})
		if err != nil {
			t.Fatal(err)
		}
		want, err := g.Generate(context.Background(), ar.Request{Classes: []int{1, 1}, K: k, Seed: seed,
			Sampling: ar.Sampling{CFG: 2.5, Temperature: 0.9, TopK: 100, TopP: 0.95}})
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range want {
			if !reflect.DeepEqual(p.IDs, ids[i]) {
				t.Fatalf("max %d sample %d: ids %v, want %v", max, i, ids[i], p.IDs)
			}
			wb, _ := p.MarshalBinary()
			if string(wb) != string(ps[i]) {
				t.Fatalf("max %d sample %d: payload differs from ar.Generate's", max, i)
			}
			sp, err := streams[i].Payload()
			if err != nil || !streams[i].Done() {
				t.Fatalf("stream %d: %v (done %v)", i, err, streams[i].Done())
			}
			sb, _ := sp.MarshalBinary()
			if string(sb) != string(ps[i]) {
				t.Fatalf("max %d sample %d: the streamed payload differs from the final one", max, i)
			}
		}
		// A done generation answers an empty done response until closed.
		again := call(t, s, M{"op": "generate_next", "generation": num(r["generation"])})
		if again["done"] != true || num(again["count"]) != 0 {
			t.Fatalf("generate_next after done: %v", again)
		}
		call(t, s, M{"op": "generate_close", "generation": num(r["generation"])})
		fail(t, s, M{"op": "generate_next", "generation": num(r["generation"])}, CodeUnknownHandle)
	}
	// Generated payloads decode with the tokenizer (they are ordinary payloads).
	r := call(t, s, M{"op": "generate_open", "ar": arh, "class": 2, "k": 2, "greedy": true})
	_, _, ps := drain(t, s, r, 0)
	d := call(t, s, M{"op": "decode", "handle": 1, "payload": ps[0], "steps": 1})
	if num(d["k"]) != 2 {
		t.Fatalf("decode: %v", d)
	}
}

func TestGenerateErrors(t *testing.T) {
	s := defaultService()
	tok, arh := openAR(t, s)
	bad := func(code, field string, req M) {
		t.Helper()
		e := fail(t, s, req, code)
		if field != "" && e["field"] != field {
			t.Fatalf("%v: field %v, want %q (%v)", req, e["field"], field, e["message"])
		}
	}
	g := func(kv ...any) M {
		m := M{"op": "generate_open", "ar": arh, "class": "circle"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	bad(CodeBadRequest, "class", g("class", "hexagon"))
	bad(CodeBadRequest, "class", g("class", 3))
	bad(CodeBadRequest, "", g("class", -1))
	bad(CodeBadRequest, "", g("class", 1.5))
	bad(CodeBadRequest, "", M{"op": "generate_open", "ar": arh})
	bad(CodeBadRequest, "", g("k", 0))
	bad(CodeBadRequest, "", g("k", 33))
	bad(CodeBadRequest, "", g("n", 0))
	bad(CodeBadRequest, "", g("n", 65))
	bad(CodeBadRequest, "", g("temperature", -0.5))
	bad(CodeBadRequest, "", g("top_p", 0))
	bad(CodeBadRequest, "", g("top_p", 1.5))
	bad(CodeBadRequest, "", g("top_k", -1))
	bad(CodeBadRequest, "", g("cfg", "x"))
	bad(CodeBadRequest, "", g("seed", -1))
	bad(CodeBadRequest, "", g("steps", 1)) // a field of another op
	bad(CodeUnknownHandle, "", M{"op": "generate_open", "ar": 999, "class": 0})
	bad(CodeUnknownHandle, "", M{"op": "generate_open", "ar": tok, "class": 0}) // a tokenizer handle is no AR handle
	bad(CodeUnknownHandle, "", M{"op": "generate_next", "generation": 0})
	bad(CodeUnknownHandle, "", M{"op": "generate_close", "generation": -3})
	bad(CodeBadRequest, "", M{"op": "generate_next", "generation": 1, "max": 0})

	// ar_open refusals.
	bad(CodeBadRequest, "", M{"op": "ar_open", "handle": tok, "config": arConfig})
	bad(CodeUnknownHandle, "", M{"op": "ar_open", "handle": 99, "config": arConfig, "weights": arW})
	bad(CodeTokenizerMismatch, "handle", M{"op": "ar_open", "handle": tok, "config": tinyConfig, "weights": tinyW})
	bad(CodeBadModel, "", M{"op": "ar_open", "handle": tok, "config": arConfig, "weights": arW[:len(arW)/2]})
	bad(CodeBadModel, "", M{"op": "ar_open", "handle": tok, "config": []byte(`{"format": "flextok-ar"}`), "weights": arW})
	bad(CodeBadModel, "", M{"op": "ar_open", "handle": tok, "config": tinyConfig, "weights": arW}) // shapes differ

	// A tokenizer of another identity: the c1 checkpoint.
	c1 := openC1(t, s)
	bad(CodeTokenizerMismatch, "handle", M{"op": "ar_open", "handle": c1, "config": arConfig, "weights": arW})

	// Closing the AR model closes its generations.
	r := call(t, s, M{"op": "generate_open", "ar": arh, "class": 0, "k": 32, "n": 4})
	gh := num(r["generation"])
	cr := call(t, s, M{"op": "close", "handle": arh})
	if num(cr["streams"]) != 1 {
		t.Fatalf("close: %v", cr)
	}
	bad(CodeUnknownHandle, "", M{"op": "generate_next", "generation": gh})
	bad(CodeUnknownHandle, "", g())

	// Limits.
	s2 := New(Options{MaxSamples: 2, MaxGenerateTokens: 10, MaxStreams: 1, Default: s.o.Default})
	_, arh2 := openAR(t, s2)
	arh, s = arh2, s2
	bad(CodeBadRequest, "", g("n", 3))
	bad(CodeBadRequest, "", g("n", 2, "k", 6))
	call(t, s2, g("n", 2, "k", 5))
	bad(CodeTooManyHandles, "", g("k", 1))
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

// A canceled generate_next answers "canceled" (or the token that was already there) and
// leaves the generation usable.
func TestGenerateCancel(t *testing.T) {
	s := defaultService()
	_, arh := openAR(t, s)
	r := call(t, s, M{"op": "generate_open", "ar": arh, "class": 0, "k": 4, "seed": 3})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e := dec(t, s.HandleContext(ctx, enc(t, M{"op": "generate_next", "generation": num(r["generation"]), "max": 1})))
	if e["ok"] == false {
		if code := e["error"].(M)["code"]; code != CodeCanceled {
			t.Fatalf("canceled generate_next: code %v", code)
		}
	}
	ids, _, _ := drain(t, s, r, 0)
	if n := len(ids[0]); e["ok"] == false && n != 4 || e["ok"] == true && n != 3 {
		t.Fatalf("%d ids after the canceled call (ok %v)", n, e["ok"])
	}
}

// TestDefaultAR: "ar_open" without config and weights opens Options.DefaultAR (the wasm
// modules' embedded default AR model) beside the tokenizer handle; without one, or with only
// one of the two files, it is refused with a message that says so.
func TestDefaultAR(t *testing.T) {
	s := defaultService()
	defer s.Close()
	tok := num(call(t, s, M{"op": "open"})["handle"])
	e := fail(t, s, M{"op": "ar_open", "handle": tok}, CodeBadRequest)
	if msg, _ := e["message"].(string); !strings.Contains(msg, "embeds no default AR model") {
		t.Errorf("no default AR: %v", e)
	}
	d := models.DefaultAR()
	s2 := New(Options{Default: s.o.Default, DefaultAR: &ARCheckpoint{Config: d.Config, Weights: d.Weights}})
	defer s2.Close()
	tok = num(call(t, s2, M{"op": "open"})["handle"])
	r := call(t, s2, M{"op": "ar_open", "handle": tok})
	if num(r["num_classes"]) != 8 || num(r["max_tokens"]) != 32 || r["cfg"] != true {
		t.Fatalf("ar_open of the default: %v", r)
	}
	arFixture(t)
	e = fail(t, s2, M{"op": "ar_open", "handle": tok, "weights": arW}, CodeBadRequest)
	if msg, _ := e["message"].(string); !strings.Contains(msg, "or neither for the default AR model") {
		t.Errorf("weights alone: %v", e)
	}
	g := call(t, s2, M{"op": "generate_open", "ar": num(r["ar"]), "class": "star", "k": 2, "seed": 1})
	for got := int64(0); got < 2; {
		n := call(t, s2, M{"op": "generate_next", "generation": num(g["generation"])})
		if got += num(n["count"]); (got == 2) != (n["done"] == true) {
			t.Fatalf("generate_next: %v", n)
		}
	}
}
