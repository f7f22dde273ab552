// Command mkfixture writes the conformance AR fixture (package arfixture) into a directory:
//
//	go run ./conformance/arfixture/mkfixture DIR
package main

import (
	"fmt"
	"os"

	"github.com/flextok-sdk/flextok/conformance/arfixture"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkfixture DIR")
		os.Exit(2)
	}
	if err := os.MkdirAll(os.Args[1], 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := arfixture.Write(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
