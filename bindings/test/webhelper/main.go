// Command webhelper writes what bindings/test/webmodel.test.ts checks the hybrid executor
// against: for each model, its browser model package (native/onnx.ExportWeb, with the fp16
// decoder), a payload the native Go engine made from an image, and the native Go engine's
// decodes of it (the reference) as little-endian float32 tensors, listed in cases.json.
//
//	go run ./bindings/test/webhelper [-one] [-fast] [-fp16=false] OUT IMAGE MODEL...
//
// MODEL is a checkpoint dir, or "default". -one: a single case (1 guided step: a large model's
// check); -fast: the engine's fast path (within its bound of the portable path) for large models.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/native/onnx"
	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/model"
)

// Case is one decode of the reference.
type Case struct {
	Name     string  `json:"name"`
	K        int     `json:"k"`
	Steps    int     `json:"steps"`
	Guidance float64 `json:"guidance"`
	APG      bool    `json:"apg"`
	Seed     uint64  `json:"seed"`
	Tensor   string  `json:"tensor"` // file of the native engine's image [3, H, W]
}

// Model is one model's package and cases.
type Model struct {
	Name    string `json:"name"`
	Package string `json:"package"` // directory of the web package
	Payload string `json:"payload"`
	Cases   []Case `json:"cases"`
}

func main() {
	one := flag.Bool("one", false, "one case: 1 guided step")
	fast := flag.Bool("fast", false, "the engine's fast path")
	fp16 := flag.Bool("fp16", true, "export the fp16 decoder too")
	flag.Parse()
	if flag.NArg() < 3 {
		fmt.Fprintln(os.Stderr, "usage: webhelper [-one] [-fast] [-fp16=false] OUT IMAGE MODEL...")
		os.Exit(2)
	}
	out, imgPath := flag.Arg(0), flag.Arg(1)
	cases := []Case{
		{Name: "cfg", K: 0, Steps: 4, Guidance: 3, Seed: 7},
		{Name: "apg-k2", K: 2, Steps: 3, Guidance: 7.5, APG: true, Seed: 1},
		{Name: "unguided", K: 1, Steps: 2, Guidance: 1, Seed: 3},
	}
	if *one {
		cases = []Case{{Name: "one-step", K: 0, Steps: 1, Guidance: 3, Seed: 7}}
	}
	var all []Model
	for _, src := range flag.Args()[2:] {
		var m *model.Model
		var err error
		name := filepath.Base(src)
		if src == "default" {
			m, err = models.Default().Model()
		} else {
			m, err = model.LoadFile(src)
		}
		check(err)
		dir := filepath.Join(out, name)
		_, err = onnx.ExportWeb(m, filepath.Join(dir, "package"), onnx.WebOptions{FP16: *fp16, Overwrite: true})
		check(err)
		e, err := engine.New(m, engine.Options{Fast: *fast})
		check(err)
		raw, err := os.ReadFile(imgPath)
		check(err)
		img, _, err := ftimage.DecodeBytes(raw, ftimage.DecodeOptions{})
		check(err)
		p, err := e.Encode(context.Background(), img, engine.EncodeOptions{})
		check(err)
		pb, err := p.MarshalBinary()
		check(err)
		check(os.WriteFile(filepath.Join(dir, "payload.msgpack"), pb, 0o644))
		mod := Model{Name: name, Package: filepath.Join(dir, "package"), Payload: filepath.Join(dir, "payload.msgpack")}
		for i, c := range cases {
			x, err := e.Decode(context.Background(), p, engine.DecodeOptions{K: c.K, Steps: c.Steps, Guidance: c.Guidance, APG: c.APG, Seed: c.Seed})
			check(err)
			b := make([]byte, 4*len(x.Data))
			for j, v := range x.Data {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(v))
			}
			c.Tensor = filepath.Join(dir, fmt.Sprintf("case%d.f32", i))
			check(os.WriteFile(c.Tensor, b, 0o644))
			mod.Cases = append(mod.Cases, c)
		}
		all = append(all, mod)
	}
	b, err := json.MarshalIndent(all, "", "  ")
	check(err)
	check(os.WriteFile(filepath.Join(out, "cases.json"), b, 0o644))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhelper:", err)
		os.Exit(1)
	}
}
