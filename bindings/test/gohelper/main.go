// Command gohelper runs, natively through sdk/service, the requests that bindings/test/e2e
// sends through the GOOS=js module for testdata/images/shapes.png, and prints the SHA-256 of
// the bytes of each response as JSON, so the TypeScript test can require the same bits.
//
//	go run ./bindings/test/gohelper <c1 checkpoint dir> <image>
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/service"
	"github.com/vmihailenco/msgpack/v5"
)

type M = map[string]any

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gohelper <checkpoint dir> <image>")
		os.Exit(2)
	}
	dir, imgPath := os.Args[1], os.Args[2]
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			fail(err)
		}
		return b
	}
	svc := service.New(service.Options{})
	call := func(req M) M {
		b, err := msgpack.Marshal(req)
		if err != nil {
			fail(err)
		}
		var r M
		if err := msgpack.Unmarshal(svc.Handle(b), &r); err != nil {
			fail(err)
		}
		if r["ok"] != true {
			fail(fmt.Errorf("%v: %v", req["op"], r["error"]))
		}
		return r
	}
	sha := func(v any) string {
		b, _ := v.([]byte)
		h := sha256.Sum256(b)
		return hex.EncodeToString(h[:])
	}
	h := call(M{"op": "open", "name": "c1", "weights": read(filepath.Join(dir, "model.safetensors")),
		"config": read(filepath.Join(dir, "config.json")), "vae_config": read(filepath.Join(dir, "vae", "config.json"))})["handle"]
	enc := call(M{"op": "encode", "handle": h, "image": read(imgPath)})
	pb := enc["payload"].([]byte)
	out := M{"payload": sha(pb), "count": enc["count"]}
	dec := M{}
	for _, k := range []int{1, 4, 32} {
		r := call(M{"op": "decode", "handle": h, "payload": pb, "k": k, "steps": 2, "seed": 7, "output": []string{"rgba", "png"}})
		dec[fmt.Sprint(k)] = M{"rgba": sha(r["rgba"]), "png": sha(r["png"])}
	}
	out["decode"] = dec
	var p payload.Payload
	if err := payload.Unmarshal(pb, &p); err != nil {
		fail(err)
	}
	st, err := payload.Split(&p, []int{4, 12})
	if err != nil {
		fail(err)
	}
	hb, _ := st.Header.AppendBinary(nil)
	out["header"] = sha(hb)
	s := call(M{"op": "stream_open", "handle": h, "header": hb, "steps": 2, "seed": 7})["stream"]
	var chunks, images []string
	for _, ch := range st.Chunks {
		cb, _ := ch.AppendBinary(nil, &st.Header)
		chunks = append(chunks, sha(cb))
		images = append(images, sha(call(M{"op": "stream_chunk", "stream": s, "chunk": cb})["rgba"]))
	}
	out["chunks"], out["stream_rgba"] = chunks, images
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gohelper:", err)
	os.Exit(1)
}
