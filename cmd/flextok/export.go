package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/native/onnx"
	"github.com/flextok-sdk/flextok/sdk/model"
)

func newExportONNX() *cobra.Command {
	var (
		modelPath, out string
		force          bool
		size           int
	)
	cmd := &cobra.Command{
		Use:   "export-onnx [-m MODEL] -o DIR",
		Short: "Export the model's encoder, decoder and VAE decoder as ONNX graphs (opset 17)",
		Long: `export-onnx writes encoder.onnx, decoder.onnx and vae_decoder.onnx (each with its
.onnx.data weights file) and manifest.json into DIR: the graphs package native runs, for use
with ONNX Runtime (or another ONNX runtime) anywhere. See docs/native.md for their signatures.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{fmt.Errorf("-o DIR is required")}
			}
			var (
				m   *model.Model
				err error
			)
			if modelPath == "" {
				m, err = models.Default().Model()
			} else {
				m, err = model.LoadFile(modelPath)
				if err == nil {
					defer m.Close()
				}
			}
			if err != nil {
				return err
			}
			id, err := m.Identity() // what the backends' payloads carry
			if err != nil {
				return err
			}
			name, digest := id.Name, id.Digest
			man, err := onnx.ExportAll(m, name, digest, size, out, force)
			if errors.Is(err, onnx.ErrExists) {
				return fmt.Errorf("%w (use --force to replace)", err)
			}
			if err != nil {
				return err
			}
			s := man.Sizes
			fmt.Fprintf(cmd.OutOrStdout(), "exported %s (opset %d, %dx%d images, %d tokens) to %s: encoder.onnx, decoder.onnx, vae_decoder.onnx, manifest.json\n",
				man.Model, man.Opset, s.Height, s.Width, s.R, out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&modelPath, "model", "m", "", "model directory or model.safetensors (default: the embedded default model)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "output directory (created)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace existing files")
	cmd.Flags().IntVar(&size, "size", 0, "image side in pixels the graphs are exported for (0: the model's size)")
	return cmd
}
