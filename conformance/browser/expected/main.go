// Command expected computes natively, through sdk/service (the portable path, one goroutine:
// the same computation the GOOS=js module runs), what the demo page must produce for a
// payload: it splits the payload into a stream with chunks of 1, 1, 2, 4, ... ids (as the
// page does), opens the stream with the given steps, pushes every chunk, and prints JSON with
// the SHA-256 of the header, of each chunk and of each stage's RGBA bytes, plus the wall
// time of each push. conformance/browser/test.mjs requires the page's hashes to be equal.
//
//	go run ./conformance/browser/expected -m MODEL_DIR [-name NAME] [-steps N] PAYLOAD.msgpack
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
}

func main() {
	model := flag.String("m", "", "model directory (model.safetensors, config.json, vae/config.json)")
	name := flag.String("name", "", "model name in payloads (default: the model's own, as flextok serve)")
	steps := flag.Uint("steps", 0, "Euler steps (0: the payload's hints or the default)")
	flag.Parse()
	if *model == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: expected -m MODEL_DIR [-name NAME] [-steps N] PAYLOAD.msgpack")
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
	weights, err := read(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		return nil, err
	}
	open := M{"op": "open", "weights": weights}
	if name != "" {
		open["name"] = name
	}
	if b, err := read(filepath.Join(dir, "config.json")); err == nil {
		open["config"] = b
	}
	if b, err := read(filepath.Join(dir, "vae", "config.json")); err == nil {
		open["vae_config"] = b
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

	svc := service.New(service.Options{})
	call := func(req M) (M, float64, error) {
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
	r, ms, err := call(open)
	if err != nil {
		return nil, err
	}
	res.OpenMs = ms
	so := M{"op": "stream_open", "handle": r["handle"], "header": header}
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
