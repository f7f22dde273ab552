package main

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/native/onnx"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/webpkg"
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

// loadModel loads the model at path, or the embedded default model when path is empty; close
// releases it.
func loadModel(path string) (m *model.Model, close func(), err error) {
	if path == "" {
		m, err = models.Default().Model()
		return m, func() {}, err
	}
	m, err = model.LoadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return m, func() { m.Close() }, nil
}

func newExportWeb() *cobra.Command {
	var (
		modelPath, out, chunk string
		force, fp16           bool
		size                  int
	)
	cmd := &cobra.Command{
		Use:   "export-web [-m MODEL] -o DIR [--size PX] [--fp16] [--chunk-size BYTES] [--force]",
		Short: "Export the browser model package: decoder graphs in chunks and manifest.json",
		Long: `export-web writes the browser model package of a model into DIR: the decoder (velocity)
and VAE decoder ONNX graphs that onnxruntime-web runs (with --fp16 also decoder_fp16, the decoder
with float16 Linear layers, for WebGPU), each file split into chunks of --chunk-size bytes
(<file>.part000, ...; a smaller file is one chunk of its own name), and manifest.json with every
file's and chunk's size and SHA-256, the model identity and its decode hints. Serve DIR with any
static file server, or let 'flextok serve' build and serve the package. See docs/web-package.md.

Existing files of the package's names are refused unless --force is given; other files in DIR
are never touched.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{fmt.Errorf("-o DIR is required")}
			}
			cs, err := parseByteSize(chunk)
			if err != nil {
				return usageError{fmt.Errorf("--chunk-size: %w", err)}
			}
			if cs < webpkg.MinChunkSize {
				return usageError{fmt.Errorf("--chunk-size %s: want at least %d bytes (1KiB)", chunk, webpkg.MinChunkSize)}
			}
			if size < 0 {
				return usageError{fmt.Errorf("--size %d: want a positive number of pixels (0: the model's size)", size)}
			}
			m, release, err := loadModel(modelPath)
			if err != nil {
				return err
			}
			defer release()
			man, err := onnx.ExportWeb(m, out, onnx.WebOptions{Size: size, FP16: fp16, ChunkSize: cs, Overwrite: force})
			if errors.Is(err, onnx.ErrExists) {
				return fmt.Errorf("%w (use --force to replace)", err)
			}
			if err != nil {
				return err
			}
			s := man.Sizes
			roles := make([]string, 0, len(man.Graphs))
			for r := range man.Graphs {
				roles = append(roles, r)
			}
			sort.Strings(roles)
			chunks := 0
			for _, f := range man.Files {
				chunks += len(f.Chunks)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported the web package of %s (%dx%d images, %d tokens; graphs %s) to %s: %d files, %s in %d chunks, manifest.json\n",
				man.Model.Name, s.Height, s.Width, s.R, strings.Join(roles, ", "), out, len(man.Files), formatBytes(man.TotalSize()), chunks)
			return nil
		},
	}
	cmd.Flags().StringVarP(&modelPath, "model", "m", "", "model directory or model.safetensors (default: the embedded default model)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "output directory (created)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace existing files of the package's names")
	cmd.Flags().IntVar(&size, "size", 0, "image side in pixels the graphs are exported for (0: the model's size)")
	cmd.Flags().BoolVar(&fp16, "fp16", false, "also export decoder_fp16, the decoder with float16 Linear layers (for WebGPU)")
	cmd.Flags().StringVar(&chunk, "chunk-size", "32MiB", "bytes per chunk: a number, or with a KiB, MiB or GiB suffix")
	return cmd
}

// parseByteSize reads "33554432", "32MiB", "512KiB" or "1GiB".
func parseByteSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > webpkg.MaxFileSize/mult {
		return 0, fmt.Errorf("%q: want a positive number of bytes, e.g. 33554432 or 32MiB", s)
	}
	return n * mult, nil
}

// formatBytes writes n in the largest binary unit that keeps it at least 1.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
