// Command expected computes natively, through sdk/service (the portable path, one goroutine:
// the same computation the GOOS=js module runs), what the demo page must produce for a
// payload: it splits the payload into a stream with chunks of 1, 1, 2, 4, ... ids (as the
// page does), opens the stream with the given steps, pushes every chunk, and prints JSON with
// the SHA-256 of the header, of each chunk and of each stage's RGBA bytes, plus the wall
// time of each push. conformance/browser/test.mjs requires the page's hashes to be equal.
//
//	go run ./conformance/browser/expected -m MODEL_DIR [-name NAME] [-steps N] PAYLOAD.msgpack
//
// Without -m the payload is decoded with the embedded default model (models.Default: the one
// flextok serve without -m generates for, and the page opens from the module): the test
// decodes the complete payload that POST /v1/generate streamed to the page this way.
//
// With -generate CLASS it computes instead what the page's Generate mode must produce: the
// embedded default tokenizer and default AR model (the bytes flextok serve hands the page),
// one sample of CLASS with -seed (sampling from the AR config's hints), pulled one token
// position at a time and pushed into a stream of the tokenizer that decodes at k = 1, 2, 4,
// ..., 32; it prints the ids, the payload's and header's SHA-256 and each stage's RGBA SHA-256.
//
//	go run ./conformance/browser/expected -generate star -seed 7 [-steps N]
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/service"
)

type M = map[string]any

type stage struct {
	K          int     `json:"k"`
	RGBASHA256 string  `json:"rgba_sha256"`
	Ms         float64 `json:"ms"`        // wall time of the stream_chunk call
	DecodeMs   float64 `json:"decode_ms"` // the engine's decode, as reported
}

type result struct {
	HeaderSHA256 string   `json:"header_sha256"`
	ChunksSHA256 []string `json:"chunks_sha256"`
	Stages       []stage  `json:"stages"`
	OpenMs       float64  `json:"open_ms"`
	// Final is a plain decode (op "decode", not a stream) of the whole payload.
	Final stage `json:"final"`
}

func main() {
	model := flag.String("m", "", "model directory (model.safetensors, config.json, vae/config.json)")
	name := flag.String("name", "", "model name in payloads (default: the model's own, as flextok serve)")
	steps := flag.Uint("steps", 0, "Euler steps (0: the payload's hints or the default)")
	class := flag.String("generate", "", "generate a sample of this class with the embedded default models instead")
	seed := flag.Uint64("seed", 0, "with -generate: the seed")
	flag.Parse()
	if *class != "" {
		res, err := generate(*class, *seed, *steps)
		if err != nil {
			fmt.Fprintln(os.Stderr, "expected:", err)
			os.Exit(1)
		}
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Println(string(b))
		return
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: expected [-m MODEL_DIR] [-name NAME] [-steps N] PAYLOAD.msgpack")
		os.Exit(2)
	}
	res, err := run(*model, *name, *steps, flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "expected:", err)
		os.Exit(1)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(b))
}

// chunkSizes is the page's split: 1, 1, 2, 4, ... (the rest in the last chunk).
func chunkSizes(n int) []int {
	var sizes []int
	for have := 0; have < n; {
		s := min(max(have, 1), n-have)
		sizes = append(sizes, s)
		have += s
	}
	return sizes
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func run(dir, name string, steps uint, payloadPath string) (*result, error) {
	read := func(p string) ([]byte, error) { return os.ReadFile(p) }
	open := M{"op": "open"}
	var opts service.Options
	if dir == "" {
		// "open" without weights: the embedded default model.
		d := models.Default()
		opts.Default = &service.Checkpoint{Weights: d.Weights, Config: d.Config, VAEConfig: d.VAEConfig}
	} else {
		weights, err := read(filepath.Join(dir, "model.safetensors"))
		if err != nil {
			return nil, err
		}
		open["weights"] = weights
		if b, err := read(filepath.Join(dir, "config.json")); err == nil {
			open["config"] = b
		}
		if b, err := read(filepath.Join(dir, "vae", "config.json")); err == nil {
			open["vae_config"] = b
		}
	}
	if name != "" {
		open["name"] = name
	}
	raw, err := read(payloadPath)
	if err != nil {
		return nil, err
	}
	var p payload.Payload
	if err := payload.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	st, err := payload.Split(&p, chunkSizes(len(p.IDs)))
	if err != nil {
		return nil, err
	}
	header, err := st.Header.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	res := &result{HeaderSHA256: hash(header)}
	var chunks [][]byte
	for i := range st.Chunks {
		c, err := st.Chunks[i].AppendBinary(nil, &st.Header)
		if err != nil {
			return nil, err
		}
		chunks = append(chunks, c)
		res.ChunksSHA256 = append(res.ChunksSHA256, hash(c))
	}

	svc := service.New(opts)
	call := func(req M) (M, float64, error) { return callService(svc, req) }
	r, ms, err := call(open)
	if err != nil {
		return nil, err
	}
	res.OpenMs = ms
	handle := r["handle"]
	so := M{"op": "stream_open", "handle": handle, "header": header}
	if steps > 0 {
		so["steps"] = steps
	}
	r, _, err = call(so)
	if err != nil {
		return nil, err
	}
	stream := r["stream"]
	for _, c := range chunks {
		r, ms, err := call(M{"op": "stream_chunk", "stream": stream, "chunk": c})
		if err != nil {
			return nil, err
		}
		rgba, _ := r["rgba"].([]byte)
		k := toUint(r["received"])
		dms, _ := r["decode_ms"].(float64)
		res.Stages = append(res.Stages, stage{K: int(k), RGBASHA256: hash(rgba), Ms: ms, DecodeMs: dms})
	}
	dec := M{"op": "decode", "handle": handle, "payload": raw}
	if steps > 0 {
		dec["steps"] = steps
	}
	r, ms, err = call(dec)
	if err != nil {
		return nil, err
	}
	rgba, _ := r["rgba"].([]byte)
	dms, _ := r["decode_ms"].(float64)
	res.Final = stage{K: int(toUint(r["k"])), RGBASHA256: hash(rgba), Ms: ms, DecodeMs: dms}
	return res, nil
}

func toUint(v any) uint64 {
	switch x := v.(type) {
	case int8:
		return uint64(x)
	case int16:
		return uint64(x)
	case int32:
		return uint64(x)
	case int64:
		return uint64(x)
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case uint64:
		return x
	}
	return 0
}

type genResult struct {
	Class         uint64   `json:"class"`
	K             int      `json:"k"`
	IDs           []uint64 `json:"ids"`
	HeaderSHA256  string   `json:"header_sha256"`
	PayloadSHA256 string   `json:"payload_sha256"`
	Stages        []stage  `json:"stages"`
}

// generate is the page's Generate mode, natively: open (the default tokenizer), ar_open (the
// default AR model), generate_open, then generate_next with max 1 until done, each position's
// chunk pushed into a stream that decodes at k = 1, 2, 4, ... and k.
func generate(class string, seed uint64, steps uint) (*genResult, error) {
	d, a := models.Default(), models.DefaultAR()
	svc := service.New(service.Options{Default: &service.Checkpoint{Weights: d.Weights, Config: d.Config, VAEConfig: d.VAEConfig}})
	call := func(req M) (M, float64, error) { return callService(svc, req) }
	r, _, err := call(M{"op": "open"})
	if err != nil {
		return nil, err
	}
	tok := r["handle"]
	// The page sends the files it downloaded from /dist/ar/: the same bytes.
	if r, _, err = call(M{"op": "ar_open", "handle": tok, "config": a.Config, "weights": a.Weights}); err != nil {
		return nil, err
	}
	if r, _, err = call(M{"op": "generate_open", "ar": r["ar"], "class": class, "seed": seed}); err != nil {
		return nil, err
	}
	gen := r["generation"]
	res := &genResult{Class: toUint(r["class"]), K: int(toUint(r["k"]))}
	header := r["headers"].([]any)[0].([]byte)
	res.HeaderSHA256 = hash(header)
	so := M{"op": "stream_open", "handle": tok, "header": header}
	if steps > 0 {
		so["steps"] = steps
	}
	if r, _, err = call(so); err != nil {
		return nil, err
	}
	stream := r["stream"]
	stageAt := map[int]bool{res.K: true}
	for n := 1; n < res.K; n *= 2 {
		stageAt[n] = true
	}
	for received := 0; ; {
		n, _, err := call(M{"op": "generate_next", "generation": gen, "max": 1})
		if err != nil {
			return nil, err
		}
		if c := int(toUint(n["count"])); c > 0 {
			received += c
			for _, id := range n["ids"].([]any)[0].([]any) {
				res.IDs = append(res.IDs, toUint(id))
			}
			chunk := n["chunks"].([]any)[0].([]byte)
			r, ms, err := call(M{"op": "stream_chunk", "stream": stream, "chunk": chunk, "decode": stageAt[received]})
			if err != nil {
				return nil, err
			}
			if rgba, ok := r["rgba"].([]byte); ok {
				dms, _ := r["decode_ms"].(float64)
				res.Stages = append(res.Stages, stage{K: received, RGBASHA256: hash(rgba), Ms: ms, DecodeMs: dms})
			}
		}
		if n["done"] == true {
			res.PayloadSHA256 = hash(n["payloads"].([]any)[0].([]byte))
			return res, nil
		}
	}
}

// callService sends one request to the service and returns its response, the milliseconds
// Handle took, and the response's error when it is not ok.
func callService(svc *service.Service, req M) (M, float64, error) {
	b, err := msgpack.Marshal(req)
	if err != nil {
		return nil, 0, err
	}
	t0 := time.Now()
	out := svc.Handle(b)
	ms := float64(time.Since(t0).Microseconds()) / 1000
	var r M
	if err := msgpack.Unmarshal(out, &r); err != nil {
		return nil, 0, err
	}
	if r["ok"] != true {
		return nil, 0, fmt.Errorf("%v: %v", req["op"], r["error"])
	}
	return r, ms, nil
}
