// Command mkfixture writes the conformance AR fixture (package arfixture) into a directory,
// or, with -dim, a larger random-weight AR model for the default tokenizer (load tests and
// benchmarks of generation: `-dim 64 -layers 2`, the model of docs/server.md's generate
// figures):
//
//	go run ./conformance/arfixture/mkfixture DIR
//	go run ./conformance/arfixture/mkfixture -dim 64 -layers 2 DIR
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/flextok-sdk/flextok/conformance/arfixture"
)

func main() {
	dim := flag.Int("dim", 0, "width of a random AR model for the default tokenizer (0: the conformance fixture)")
	layers := flag.Int("layers", 2, "its layers (with -dim)")
	heads := flag.Int("heads", 4, "its query heads (with -dim); 2 key/value heads less when divisible")
	seed := flag.Uint64("seed", 5, "its weights' seed (with -dim)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: mkfixture [-dim D -layers L -heads H -seed S] DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	err := error(nil)
	if *dim == 0 {
		err = arfixture.Write(dir)
	} else {
		kv := *heads
		if kv%2 == 0 {
			kv /= 2
		}
		m, e := arfixture.RandomForDefault(arfixture.Shape{Dim: *dim, Layers: *layers, Heads: *heads, KVHeads: kv, MultipleOf: 32}, arfixture.Classes, *seed)
		if err = e; err == nil {
			err = m.Save(dir, false)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
