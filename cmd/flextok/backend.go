package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/native"
	"github.com/flextok-sdk/flextok/sdk/engine"
)

// backendFlags select the executor: --backend go|ort and --provider (ort only).
type backendFlags struct {
	backend, provider, cache string
}

func (f *backendFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.backend, "backend", "go", "executor: go (pure Go) or ort (ONNX Runtime, library at $FLEXTOK_ORT_LIB)")
	cmd.Flags().StringVar(&f.provider, "provider", "auto", "ONNX Runtime execution provider, with --backend ort: auto, cuda or cpu")
	cmd.Flags().StringVar(&f.cache, "onnx-cache", "", "with --backend ort: keep the exported ONNX graphs in this directory and reuse them (default: export at every start)")
}

// checkProvider validates --provider.
func checkProvider(provider string) error {
	switch provider {
	case "auto", "cuda", "cpu":
		return nil
	}
	return usageError{fmt.Errorf("--provider %q: want auto, cuda or cpu", provider)}
}

// checkBackendFlags validates --backend and --provider before any work.
func checkBackendFlags(cmd *cobra.Command, backend, provider string) error {
	switch backend {
	case "go", "ort":
	default:
		return usageError{fmt.Errorf("--backend %q: want go or ort", backend)}
	}
	if err := checkProvider(provider); err != nil {
		return err
	}
	if backend != "ort" && cmd.Flags().Changed("provider") {
		return usageError{errors.New("--provider applies to --backend ort only")}
	}
	if backend != "ort" && cmd.Flags().Changed("onnx-cache") {
		return usageError{errors.New("--onnx-cache applies to --backend ort only")}
	}
	return nil
}

// openBackend loads the model into the chosen executor: go, the pure-Go *engine.Engine, or
// ort, ONNX Runtime through native.Backend (the library from $FLEXTOK_ORT_LIB, else the
// loader's search path; --threads sizes its intra-op pool). Notes on the provider chosen go to
// stderr. The caller closes the executor.
func openBackend(bf *backendFlags, ef *engineFlags, stderr io.Writer) (engine.Executor, error) {
	backend := bf.backend
	if backend != "ort" {
		e, err := ef.load()
		if err != nil {
			return nil, err
		}
		return e, nil
	}
	if p, err := ef.parsePrecision(); err != nil {
		return nil, err
	} else if p != engine.FP32 {
		return nil, usageError{fmt.Errorf("--precision %s applies to the Go engine only: --backend ort runs the float32 ONNX graph", p)}
	}
	o := nativeOptions(bf, ef, stderr)
	var (
		b   *native.Backend
		err error
	)
	if ef.model == "" {
		d := models.Default()
		b, err = native.LoadBytes(d.Weights, d.Config, d.VAEConfig, o)
	} else {
		b, err = native.Load(ef.model, o)
	}
	if err != nil {
		return nil, fmt.Errorf("--backend ort: %w", err)
	}
	return b, nil
}

// nativeOptions are the ONNX Runtime options of --backend ort (the provider, threads, export
// cache and library), for the tokenizer and AR models alike.
func nativeOptions(bf *backendFlags, ef *engineFlags, stderr io.Writer) native.Options {
	return native.Options{
		Provider:       native.Provider(bf.provider),
		IntraOpThreads: ef.threads,
		ImageSize:      ef.size,
		ExportDir:      bf.cache,
		Parts:          ef.parts,
		LibraryPath:    bundledORT(),
		Logf:           func(format string, a ...any) { fmt.Fprintf(stderr, "flextok: "+format+"\n", a...) },
	}
}

// bundledORT is the library make setup installs next to this binary's checkout
// (bin/../.deps/ort/libonnxruntime.so), used when $FLEXTOK_ORT_LIB is unset and it exists;
// otherwise "" (native's order: $FLEXTOK_ORT_LIB, then the loader's search path).
func bundledORT() string {
	if os.Getenv("FLEXTOK_ORT_LIB") != "" {
		return ""
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "..", ".deps", "ort", "libonnxruntime.so")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
