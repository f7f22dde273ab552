// Command flextok works with FlexTok image tokens: encode images into token payloads (in Go
// or ONNX Runtime, over a directory in shards), decode payloads or their first k tokens into
// images, evaluate reconstruction quality by k, inspect payloads and checkpoints, export the
// model as ONNX graphs, and serve the progressive-decoding browser demo. Without -m it uses the
// SDK's embedded default model.
//
// Errors are one line on stderr and a non-zero exit code: 1 for bad input or a failed
// operation, 2 for bad usage.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// usageError marks errors in how the command was called (exit code 2).
type usageError struct{ error }

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "flextok:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "flextok",
		Short:         "FlexTok image tokens: encode, decode, eval, inspect, export-onnx, serve",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newEncode(), newDecode(), newInspect(), newInspectModel(), newVersion())
	root.AddCommand(newEval())
	root.AddCommand(newServe())
	root.AddCommand(newExportONNX(), newExportWeb())
	root.AddCommand(newBench())
	root.AddCommand(newGenerate())
	return root
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// about prefixes err with what a command did and the file or directory it did it to, leaving
// the name out when err already gives it: "inspect-model X: X: flextok/model: …" says X twice.
func about(what, name string, err error) error {
	if mentions(err.Error(), name) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s %s: %w", what, name, err)
}

// mentions reports whether msg names the path p as a word of its own: p follows the start or a
// space and is followed by the end, ':', '/' or a space ("m" is not named by "flextok/model:").
func mentions(msg, p string) bool {
	if p == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(msg[i:], p)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(p)
		if (j == 0 || msg[j-1] == ' ') && (end == len(msg) || strings.ContainsRune(": /", rune(msg[end]))) {
			return true
		}
		i = j + 1
	}
}
