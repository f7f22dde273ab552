package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/metrics"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// gridPad is the white gap between the tiles of eval's --grid.
const gridPad = 2

func newEval() *cobra.Command {
	var (
		ef       engineFlags
		dir      string
		ksFlag   string
		df       decodeFlags
		limit    int
		filter   string
		gridOut  string
		gridRows int
		jsonOut  string
		force    bool
		rf       readFlags
	)
	cmd := &cobra.Command{
		Use:   "eval -m MODEL --images DIR [--ks 1,2,4,...] [--grid OUT.png] [--json OUT.json]",
		Short: "Reconstruction quality (PSNR, SSIM) by number of tokens k",
		Long: "Encode each image of DIR (png, jpeg, gif, webp, bmp, tiff; in name order) once with all\n" +
			"tokens, decode its first k tokens for every k of --ks (default: the powers of two up to\n" +
			"the model's token count, and the count itself), and compare each reconstruction with\n" +
			"the image the model saw (the resized, centre-cropped 8-bit RGB input):\n" +
			"  PSNR = 10·log10(255²/MSE), the MSE over all pixels and the 3 RGB channels (dB);\n" +
			"  SSIM = Wang et al. 2004 (11×11 Gaussian window, σ 1.5, K1 0.01, K2 0.03, L 255) per\n" +
			"         RGB channel, averaged over the channels (see sdk/metrics).\n" +
			"Every decode uses the same seed, so the columns differ only in k. Unset decode flags\n" +
			"take the model's decode hints where it has them (the embedded default model does),\n" +
			"else the official README's settings: 20 steps, guidance 7.5 with APG, seed 0.\n" +
			"Stdout: '#' comment lines and a table, one row per k: k, images, then mean, std\n" +
			"(population), min and max of PSNR and of SSIM. --json adds the per-image values (null\n" +
			"for an infinite PSNR: a perfect reconstruction); --grid writes a PNG with one row per\n" +
			"image (the first --grid-rows) and the columns input, k1, k2, ...",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			if dir == "" {
				return usageError{errors.New("--images is required")}
			}
			ks, err := parseKs(ksFlag)
			if err != nil {
				return err
			}
			if filter != ftimage.FilterBilinear && filter != ftimage.FilterCatmullRom {
				return usageError{fmt.Errorf("--filter %q, want %s or %s", filter, ftimage.FilterBilinear, ftimage.FilterCatmullRom)}
			}
			read, err := rf.options()
			if err != nil {
				return err
			}
			if limit < 0 {
				return usageError{fmt.Errorf("--limit must be at least 0, got %d", limit)}
			}
			if gridOut != "" && gridRows < 1 {
				return usageError{fmt.Errorf("--grid-rows must be at least 1, got %d", gridRows)}
			}
			if fl.Changed("steps") && df.steps < 1 {
				return usageError{fmt.Errorf("--steps must be at least 1, got %d", df.steps)}
			}
			if gridOut != "" && jsonOut != "" && filepath.Clean(gridOut) == filepath.Clean(jsonOut) {
				return usageError{errors.New("--grid and --json name the same file")}
			}
			// Refuse before the work, not after it (writeNew checks again at the end).
			for _, out := range []string{gridOut, jsonOut} {
				if out == "" || force {
					continue
				}
				if _, err := os.Stat(out); err == nil {
					return fmt.Errorf("%s exists (use --force to replace it)", out)
				}
			}
			inputs, err := expandInputs([]string{dir}, imageExts)
			if err != nil {
				return about("--images", dir, err)
			}
			if limit > 0 && len(inputs) > limit {
				inputs = inputs[:limit]
			}
			e, err := ef.load()
			if err != nil {
				return err
			}
			maxK := e.MaxTokens()
			if ks == nil {
				ks = defaultKs(maxK)
			}
			for _, k := range ks {
				if k > maxK {
					return usageError{fmt.Errorf("--ks: k = %d, the model has %d tokens (want 1..%d)", k, maxK, maxK)}
				}
			}
			decodeOpts := func(p *payload.Payload) engine.DecodeOptions { return df.options(cmd, p, e.Hints()) }
			ev := evaluator{e: e, ks: ks, filter: filter, read: read, opts: decodeOpts}
			ctx, stop := signalContext()
			defer stop()
			start := time.Now()
			base := decodeOpts(&payload.Payload{Hints: e.Hints()})
			bar := newBar(len(inputs)*len(ks)*base.Steps, "eval")
			var res []imageResult
			var grid [][]image.Image
			for i, in := range inputs {
				r, tiles, err := ev.one(ctx, in, gridOut != "" && i < gridRows, bar)
				if err != nil {
					bar.finish()
					return about("eval", in, err)
				}
				res = append(res, r)
				if tiles != nil {
					grid = append(grid, tiles)
				}
			}
			bar.finish()
			elapsed := time.Since(start)

			rows := summarize(ks, res)
			h, w := e.ImageSize()
			id := e.Identity()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "# model %s (%dx%d, %d tokens); %d images from %s\n", id.Name, w, h, maxK, len(res), dir)
			apgText := "CFG"
			if base.APG {
				apgText = "APG"
			}
			fmt.Fprintf(out, "# decode: steps %d, guidance %g (%s), seed %d; resize filter %s\n", base.Steps, base.Guidance, apgText, base.Seed, filter)
			writeTable(out, rows)
			n := len(res) * len(ks)
			fmt.Fprintf(out, "# %d decodes in %.2fs (%.3fs each, encodes included)\n", n, elapsed.Seconds(), elapsed.Seconds()/float64(n))

			if gridOut != "" {
				g, err := ftimage.Grid(grid, gridPad)
				if err != nil {
					return fmt.Errorf("grid: %w", err)
				}
				var buf bytes.Buffer
				if err := ftimage.EncodePNG(&buf, g); err != nil {
					return err
				}
				if err := writeNew(gridOut, buf.Bytes(), force); err != nil {
					return err
				}
			}
			if jsonOut != "" {
				doc := evalJSON{
					Model: id.Name, Digest: hex.EncodeToString(id.Digest[:]),
					Height: h, Width: w, MaxTokens: maxK, Images: dir, Count: len(res),
					Steps: base.Steps, Guidance: base.Guidance, APG: base.APG, Seed: base.Seed, Filter: filter,
					Ks: ks, Summary: rows, PerImage: res,
				}
				b, err := json.MarshalIndent(doc, "", "  ")
				if err != nil {
					return err
				}
				if err := writeNew(jsonOut, append(b, '\n'), force); err != nil {
					return err
				}
			}
			return nil
		},
	}
	ef.register(cmd)
	cmd.Flags().StringVar(&dir, "images", "", "directory of images to evaluate (required)")
	cmd.Flags().StringVar(&ksFlag, "ks", "", "token counts to decode, comma-separated (default: 1,2,4,... up to the model's)")
	df.register(cmd, "noise seed (the same for every image and k)")
	cmd.Flags().IntVar(&limit, "limit", 0, "evaluate only the first N images (0: all)")
	cmd.Flags().StringVar(&filter, "filter", ftimage.FilterBilinear, "resize filter: bilinear (as the official demo) or catmull-rom")
	cmd.Flags().StringVar(&gridOut, "grid", "", "write a PNG grid: a row per image (input, then each k)")
	cmd.Flags().IntVar(&gridRows, "grid-rows", 8, "images in the grid (the first N)")
	cmd.Flags().StringVar(&jsonOut, "json", "", "write the summary and per-image values as JSON")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace existing output files")
	rf.register(cmd)
	return cmd
}

// parseKs reads --ks: comma-separated positive integers without repeats, in the order given
// (nil for the default). The upper bound is checked once the model is loaded.
func parseKs(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ks []int
	seen := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, usageError{fmt.Errorf("--ks: %q is not a number", strings.TrimSpace(f))}
		}
		if k < 1 {
			return nil, usageError{fmt.Errorf("--ks: k = %d, want at least 1", k)}
		}
		if seen[k] {
			return nil, usageError{fmt.Errorf("--ks: k = %d given twice", k)}
		}
		seen[k] = true
		ks = append(ks, k)
	}
	return ks, nil
}

// defaultKs is 1, 2, 4, ... up to maxK, and maxK itself when it is not a power of two.
func defaultKs(maxK int) []int {
	var ks []int
	k := 1
	for ; k <= maxK; k *= 2 {
		ks = append(ks, k)
	}
	if ks[len(ks)-1] != maxK {
		ks = append(ks, maxK)
	}
	return ks
}

// evaluator encodes and decodes one image at every k.
type evaluator struct {
	e      *engine.Engine
	ks     []int
	filter string
	read   ftimage.DecodeOptions
	opts   func(*payload.Payload) engine.DecodeOptions
}

// imageResult is one image's metrics, aligned with the k list.
type imageResult struct {
	File string      `json:"file"`
	PSNR []jsonFloat `json:"psnr"`
	SSIM []jsonFloat `json:"ssim"`
}

// one evaluates the image file in; with tiles it also returns the grid row (the model input,
// then the reconstruction at each k).
func (ev evaluator) one(ctx context.Context, in string, tiles bool, b bar) (imageResult, []image.Image, error) {
	res := imageResult{File: filepath.Base(in)}
	img, err := readImage(in, ev.read)
	if err != nil {
		return res, nil, err
	}
	h, w := ev.e.ImageSize()
	ref, err := modelInput(img, h, w, ev.filter)
	if err != nil {
		return res, nil, err
	}
	p, err := ev.e.Encode(ctx, img, engine.EncodeOptions{Filter: ev.filter})
	if err != nil {
		return res, nil, err
	}
	var row []image.Image
	if tiles {
		row = append(row, ref)
	}
	for _, k := range ev.ks {
		o := ev.opts(p)
		o.K = k
		o.OnStep = func(flow.Step) error { b.add(1); return nil }
		rec, err := ev.e.DecodeImage(ctx, p, o)
		if err != nil {
			return res, nil, fmt.Errorf("k = %d: %w", k, err)
		}
		ps, err := metrics.PSNR(ref, rec)
		if err != nil {
			return res, nil, err
		}
		ss, err := metrics.SSIM(ref, rec)
		if err != nil {
			return res, nil, err
		}
		res.PSNR = append(res.PSNR, jsonFloat(ps))
		res.SSIM = append(res.SSIM, jsonFloat(ss))
		if tiles {
			row = append(row, rec)
		}
	}
	return res, row, nil
}

// modelInput is the 8-bit RGB image the model sees for img: the engine's preprocessing (resize
// with filter, centre crop to w×h) as ftimage.ToTensor does it, before the byte→[-1, 1]
// normalisation. The bytes are recovered exactly from the tensor: ToTensor maps byte v to
// float32((v/255 − 0.5)/0.5), whose distance to its neighbours (2/255) dwarfs float32 error, so
// rounding (x+1)·127.5 returns v. (FromTensor would not: it truncates, as the official demo's
// output conversion, and turns bytes 1..63 into one less.)
func modelInput(img image.Image, h, w int, filter string) (*image.NRGBA, error) {
	t, _, err := ftimage.ToTensor(img, ftimage.Preprocess{Height: h, Width: w, Filter: filter})
	if err != nil {
		return nil, err
	}
	n := h * w
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < n; i++ {
		for c := 0; c < 3; c++ {
			v := math.Round((float64(t.Data[c*n+i]) + 1) * 127.5)
			out.Pix[4*i+c] = uint8(min(max(v, 0), 255))
		}
		out.Pix[4*i+3] = 0xff
	}
	return out, nil
}

// jsonFloat is a float64 that encodes NaN and ±Inf (an identical reconstruction's PSNR) as null.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// stats are the mean, population standard deviation, min and max of one metric at one k.
type stats struct {
	Mean jsonFloat `json:"mean"`
	Std  jsonFloat `json:"std"`
	Min  jsonFloat `json:"min"`
	Max  jsonFloat `json:"max"`
}

func statsOf(v []jsonFloat) stats {
	var s, mn, mx float64 = 0, math.Inf(1), math.Inf(-1)
	for _, x := range v {
		s += float64(x)
		mn, mx = min(mn, float64(x)), max(mx, float64(x))
	}
	mean := s / float64(len(v))
	var ss float64
	for _, x := range v {
		d := float64(x) - mean
		ss += d * d
	}
	return stats{jsonFloat(mean), jsonFloat(math.Sqrt(ss / float64(len(v)))), jsonFloat(mn), jsonFloat(mx)}
}

// evalRow is the summary at one k.
type evalRow struct {
	K      int   `json:"k"`
	Images int   `json:"images"`
	PSNR   stats `json:"psnr"`
	SSIM   stats `json:"ssim"`
}

func summarize(ks []int, res []imageResult) []evalRow {
	rows := make([]evalRow, len(ks))
	for j, k := range ks {
		ps, ss := make([]jsonFloat, len(res)), make([]jsonFloat, len(res))
		for i, r := range res {
			ps[i], ss[i] = r.PSNR[j], r.SSIM[j]
		}
		rows[j] = evalRow{K: k, Images: len(res), PSNR: statsOf(ps), SSIM: statsOf(ss)}
	}
	return rows
}

func writeTable(w io.Writer, rows []evalRow) {
	fmt.Fprintf(w, "%5s %6s  %9s %8s %8s %8s  %9s %8s %8s %8s\n",
		"k", "images", "psnr_mean", "psnr_std", "psnr_min", "psnr_max", "ssim_mean", "ssim_std", "ssim_min", "ssim_max")
	for _, r := range rows {
		fmt.Fprintf(w, "%5d %6d  %9.3f %8.3f %8.3f %8.3f  %9.4f %8.4f %8.4f %8.4f\n", r.K, r.Images,
			r.PSNR.Mean, r.PSNR.Std, r.PSNR.Min, r.PSNR.Max, r.SSIM.Mean, r.SSIM.Std, r.SSIM.Min, r.SSIM.Max)
	}
}

// evalJSON is --json's document.
type evalJSON struct {
	Model     string        `json:"model"`
	Digest    string        `json:"digest"`
	Height    int           `json:"height"`
	Width     int           `json:"width"`
	MaxTokens int           `json:"max_tokens"`
	Images    string        `json:"images"`
	Count     int           `json:"count"`
	Steps     int           `json:"steps"`
	Guidance  float64       `json:"guidance"`
	APG       bool          `json:"apg"`
	Seed      uint64        `json:"seed"`
	Filter    string        `json:"filter"`
	Ks        []int         `json:"ks"`
	Summary   []evalRow     `json:"summary"`
	PerImage  []imageResult `json:"per_image"`
}
