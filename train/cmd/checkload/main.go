// Command checkload loads a checkpoint directory written by train/train.py with the SDK's
// loader (the same path as the official checkpoints) and prints its summary.
//
//	go run ./train/cmd/checkload <dir>
package main

import (
	"fmt"
	"os"

	"github.com/flextok-sdk/flextok/sdk/model"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: checkload <checkpoint dir or model.safetensors>")
		os.Exit(2)
	}
	m, err := model.LoadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkload:", err)
		os.Exit(1)
	}
	defer m.Weights.Close()
	s := model.Summarize(m)
	fmt.Println(s.String())
	if len(s.Unexpected) > 0 {
		fmt.Fprintf(os.Stderr, "checkload: %d tensors the config does not use\n", len(s.Unexpected))
		os.Exit(1)
	}
	fmt.Println("checkload: OK")
}
