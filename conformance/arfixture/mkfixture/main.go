// Command mkfixture writes the conformance AR fixture (package arfixture) into a directory,
// or, with -dim, a larger random-weight AR model for the default tokenizer (load tests and
// benchmarks of generation: `-dim 64 -layers 2`, the model of docs/server.md's generate
// figures):
//
//	go run ./conformance/arfixture/mkfixture DIR
//	go run ./conformance/arfixture/mkfixture -dim 64 -layers 2 DIR
//
// With -interim it writes instead a random-weight stand-in of the default AR model
// (arfixture.WriteInterimDefault: its shape, the classes of models/default/labels.json, its
// sampling hints), for development of a model of that shape (never commit it):
//
//	go run ./conformance/arfixture/mkfixture -interim DIR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/flextok-sdk/flextok/conformance/arfixture"
	"github.com/flextok-sdk/flextok/models"
)

func main() {
	dim := flag.Int("dim", 0, "width of a random AR model for the default tokenizer (0: the conformance fixture)")
	layers := flag.Int("layers", 2, "its layers (with -dim)")
	heads := flag.Int("heads", 4, "its query heads (with -dim); 2 key/value heads less when divisible")
	seed := flag.Uint64("seed", 5, "its weights' seed (with -dim)")
	interim := flag.Bool("interim", false, "write a random stand-in of the default AR model (shape, classes and hints of the trained one)")
	flag.Usage = func() { fmt.Fprintln(os.Stderr, "usage: mkfixture [-interim | -dim D -layers L -heads H -seed S] DIR") }
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *interim, *dim, *layers, *heads, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mkfixture:", err)
		os.Exit(1)
	}
}

func run(dir string, interim bool, dim, layers, heads int, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	switch {
	case interim:
		var labels struct {
			Classes []string `json:"classes"`
		}
		if err := json.Unmarshal(models.Default().Labels, &labels); err != nil {
			return fmt.Errorf("models/default/labels.json: %w", err)
		}
		return arfixture.WriteInterimDefault(dir, labels.Classes)
	case dim > 0:
		kv := heads
		if kv%2 == 0 {
			kv /= 2
		}
		m, err := arfixture.RandomForDefault(arfixture.Shape{Dim: dim, Layers: layers, Heads: heads, KVHeads: kv, MultipleOf: 32}, arfixture.Classes, seed)
		if err != nil {
			return err
		}
		return m.Save(dir, false)
	default:
		return arfixture.Write(dir)
	}
}
