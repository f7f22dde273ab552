package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// checkBackendFlags validates --backend and --provider before any work.
func checkBackendFlags(cmd *cobra.Command, backend, provider string) error {
	switch backend {
	case "go", "ort":
	default:
		return usageError{fmt.Errorf("--backend %q: want go or ort", backend)}
	}
	switch provider {
	case "auto", "cuda", "cpu":
	default:
		return usageError{fmt.Errorf("--provider %q: want auto, cuda or cpu", provider)}
	}
	if backend != "ort" && cmd.Flags().Changed("provider") {
		return usageError{errors.New("--provider applies to --backend ort only")}
	}
	return nil
}

// openBackend loads the model into the chosen executor; close releases it.
func openBackend(backend, provider string, ef *engineFlags) (batchEncoder, func() error, error) {
	switch backend {
	case "ort":
		return nil, nil, errors.New("--backend ort: the ONNX Runtime backend is not built yet (use --backend go)")
	default:
		e, err := ef.load()
		if err != nil {
			return nil, nil, err
		}
		return e, func() error { return nil }, nil
	}
}
