// Command mkfixture writes the conformance AR fixture (package arfixture) into a directory:
//
//	go run ./conformance/arfixture/mkfixture DIR
//
// With -interim it writes instead a random-weight stand-in of the trained default AR model
// (arfixture.WriteInterimDefault: its shape, the classes of models/default/labels.json, its
// sampling hints), for development before the trained model is in models/default/ar (never
// commit it):
//
//	go run ./conformance/arfixture/mkfixture -interim models/default/ar
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
	interim := flag.Bool("interim", false, "write a random stand-in of the default AR model (shape, classes and hints of the trained one)")
	flag.Usage = func() { fmt.Fprintln(os.Stderr, "usage: mkfixture [-interim] DIR") }
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	dir := flag.Arg(0)
	if err := run(dir, *interim); err != nil {
		fmt.Fprintln(os.Stderr, "mkfixture:", err)
		os.Exit(1)
	}
}

func run(dir string, interim bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if !interim {
		return arfixture.Write(dir)
	}
	var labels struct {
		Classes []string `json:"classes"`
	}
	if err := json.Unmarshal(models.Default().Labels, &labels); err != nil {
		return fmt.Errorf("models/default/labels.json: %w", err)
	}
	return arfixture.WriteInterimDefault(dir, labels.Classes)
}
