package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// benchResult is what `flextok bench` measures for one executor.
type benchResult struct {
	Backend      string  `json:"backend"`
	Error        string  `json:"error,omitempty"`
	LoadSeconds  float64 `json:"load_s,omitempty"`
	EncodePerSec float64 `json:"encode_images_per_s,omitempty"`
	DecodePerSec float64 `json:"decode_images_per_s,omitempty"`
	StepMillis   float64 `json:"decoder_step_ms,omitempty"`
	// Load memory: the growth of the resident set during the load (peak) and after it, over
	// the checkpoint's weights in float32 (benchReport.WeightsMB); 0 where not measured (not
	// Linux). The Go backends also load DecodeOnly (engine.Options.Parts), as flextok decode
	// does: its load time and memory.
	LoadPeakRSS           float64 `json:"load_peak_rss_per_f32_weights,omitempty"`
	LoadRSS               float64 `json:"load_rss_per_f32_weights,omitempty"`
	DecodeOnlyLoadSeconds float64 `json:"decode_only_load_s,omitempty"`
	DecodeOnlyPeakRSS     float64 `json:"decode_only_load_peak_rss_per_f32_weights,omitempty"`
	DecodeOnlyRSS         float64 `json:"decode_only_load_rss_per_f32_weights,omitempty"`
}

type benchReport struct {
	Model   string `json:"model"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Tokens  int    `json:"tokens"`
	Batch   int    `json:"batch"`
	Steps   int    `json:"steps"`
	Runs    int    `json:"runs"`
	Threads int    `json:"threads"`
	// WeightsMB is the size of the checkpoint's weights in float32 (encoder and decoder), in
	// MB (1e6 bytes): the unit of the load memory figures.
	WeightsMB float64       `json:"f32_weights_mb"`
	Results   []benchResult `json:"results"`
}

func newBench() *cobra.Command {
	var (
		ef       engineFlags
		provider string
		cache    string
		backends string
		batch    int
		steps    int
		runs     int
		jsonOut  bool
		driven   bool
	)
	cmd := &cobra.Command{
		Use:   "bench [-m MODEL]",
		Short: "Measure encoding and decoding on this machine, Go engine and ONNX Runtime side by side",
		Long: "Measure, for each executor in --backends, the model's load time, batched encoding\n" +
			"(images/s for --batch images per call), guided decoding of one image at the payload's hinted\n" +
			"steps (images/s) and one decoder step (the conditional and unconditional passes), on\n" +
			"synthetic images. Each figure is the median of --runs timed calls after one untimed call.\n" +
			"The ratio columns are go/ort and go-bf16/ort: above 1, the Go engine is faster. go-bf16 is\n" +
			"the Go engine with --precision bf16 (bfloat16 decoder weights; the encoder stays fp32).\n" +
			"A backend that cannot start\n" +
			"(ONNX Runtime's library missing) is reported and the others still run.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if batch < 1 || runs < 1 || steps < 0 {
				return usageError{errors.New("--batch and --runs must be at least 1, --steps at least 0")}
			}
			var names []string
			for _, b := range strings.Split(backends, ",") {
				b = strings.TrimSpace(b)
				if b != "go" && b != "go-bf16" && b != "ort" {
					return usageError{fmt.Errorf("--backends %q: want a list of go, go-bf16 and ort", backends)}
				}
				if !slices.Contains(names, b) {
					names = append(names, b)
				}
			}
			if err := checkProvider(provider); err != nil {
				return err
			}
			rep := benchReport{Batch: batch, Runs: runs, Threads: ef.threads}
			if rep.Threads <= 0 {
				rep.Threads = runtime.GOMAXPROCS(0)
			}
			weights, err := f32WeightBytes(ef.model)
			if err != nil {
				return about("load model", ef.model, err)
			}
			rep.WeightsMB = float64(weights) / 1e6
			if driven {
				return runDriven(cmd, names, ef, provider, cache, steps)
			}
			for _, name := range names {
				bf := backendFlags{backend: name, provider: provider, cache: cache}
				efn := ef
				if name == "go-bf16" { // the Go engine with --precision bf16
					bf.backend, efn.precision = "go", "bf16"
				}
				r := benchOne(cmd.Context(), &bf, &efn, batch, steps, runs, &rep, cmd.ErrOrStderr())
				r.Backend = name
				rep.Results = append(rep.Results, r)
			}
			if jsonOut {
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			} else {
				printBench(cmd.OutOrStdout(), &rep)
			}
			for _, r := range rep.Results {
				if r.Error == "" {
					return nil
				}
			}
			return errors.New("no backend could run")
		},
	}
	ef.register(cmd)
	cmd.Flags().StringVar(&backends, "backends", "go,go-bf16,ort", "executors to measure, a list of: go (the Go engine at --precision), go-bf16 (the Go engine at bf16), ort")
	cmd.Flags().StringVar(&provider, "provider", "auto", "ONNX Runtime execution provider: auto, cuda or cpu")
	cmd.Flags().StringVar(&cache, "onnx-cache", "", "keep the exported ONNX graphs in this directory and reuse them")
	cmd.Flags().IntVar(&batch, "batch", 8, "images per encoding call")
	cmd.Flags().IntVar(&steps, "steps", 0, "decoding steps (0: the payload's hint, else the model's, else 20)")
	cmd.Flags().IntVar(&runs, "runs", 3, "timed calls per figure (the median is reported)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&driven, "driven", false, "load the --backends once, then run the ops that stdin names, one a line (\"go-bf16 decode\", \"ort tokenize\"), and print each one's time as a JSON line: for a driver that interleaves them with other programs (tools/reference/bench_torch.py)")
	return cmd
}

// benchOne loads one executor and measures it; a failure is recorded in the result.
func benchOne(ctx context.Context, bf *backendFlags, ef *engineFlags, batch, steps, runs int, rep *benchReport, stderr io.Writer) benchResult {
	r := benchResult{Backend: bf.backend}
	perWeights := func(b int64) float64 { return float64(b) / (rep.WeightsMB * 1e6) }
	if bf.backend == "go" { // first the decode-only load of flextok decode, then the full one
		efd := *ef
		efd.parts = engine.DecodeOnly
		ex, m, err := measureLoad(func() (engine.Executor, error) { return openBackend(bf, &efd, stderr) })
		if err != nil {
			r.Error = err.Error()
			return r
		}
		ex.Close()
		r.DecodeOnlyLoadSeconds, r.DecodeOnlyPeakRSS, r.DecodeOnlyRSS = m.seconds, perWeights(m.peak), perWeights(m.after)
	}
	ex, m, err := measureLoad(func() (engine.Executor, error) { return openBackend(bf, ef, stderr) })
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer ex.Close()
	r.LoadSeconds, r.LoadPeakRSS, r.LoadRSS = m.seconds, perWeights(m.peak), perWeights(m.after)
	h, w := ex.ImageSize()
	rep.Model, rep.Width, rep.Height, rep.Tokens = ex.Identity().Name, w, h, ex.MaxTokens()

	imgs := make([]image.Image, batch)
	for i := range imgs {
		imgs[i] = benchImage(i, w, h)
	}
	var ps []*payload.Payload
	enc, err := median(runs, func() error {
		ps, err = ex.EncodeBatch(ctx, imgs, engine.EncodeOptions{})
		return err
	})
	if err != nil {
		r.Error = fmt.Sprintf("encode: %v", err)
		return r
	}
	r.EncodePerSec = float64(batch) / enc

	o := engine.DefaultDecodeOptions(ps[0])
	if steps > 0 {
		o.Steps = steps
	}
	rep.Steps = o.Steps
	one := []*payload.Payload{ps[0]}
	full, err := median(runs, func() error { _, err := ex.DecodeBatch(ctx, one, o); return err })
	if err != nil {
		r.Error = fmt.Sprintf("decode: %v", err)
		return r
	}
	r.DecodePerSec = 1 / full
	if o.Steps > 1 {
		o1 := o
		o1.Steps = 1
		single, err := median(runs, func() error { _, err := ex.DecodeBatch(ctx, one, o1); return err })
		if err != nil {
			r.Error = fmt.Sprintf("decode: %v", err)
			return r
		}
		r.StepMillis = max(0, (full-single)/float64(o.Steps-1)*1e3)
	}
	return r
}

// median runs f once untimed, then runs times, and returns the median duration in seconds.
func median(runs int, f func() error) (float64, error) {
	if err := f(); err != nil {
		return 0, err
	}
	ts := make([]float64, runs)
	for i := range ts {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ts[i] = time.Since(start).Seconds()
	}
	slices.Sort(ts)
	return ts[runs/2], nil
}

// benchImage is a synthetic w×h picture (a lit disc on a gradient) that differs with i.
func benchImage(i, w, h int) image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	cx, cy, r := w/2+i%5-2, h/2, (w/4)+i%3
	for y := range h {
		for x := range w {
			c := color.NRGBA{uint8(255 * x / w), uint8(255 * y / h), uint8(37 * i), 255}
			if (x-cx)*(x-cx)+(y-cy)*(y-cy) < r*r {
				c = color.NRGBA{240, uint8(200 - 20*i%200), 40, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

func printBench(out io.Writer, rep *benchReport) {
	fmt.Fprintf(out, "model %s (%d×%d, %d tokens, %s MB of f32 weights), %d threads; encode batch %d, decode %d steps, median of %d\n\n",
		rep.Model, rep.Width, rep.Height, rep.Tokens, sig3(rep.WeightsMB), rep.Threads, rep.Batch, rep.Steps, rep.Runs)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	var goR, bfR, ortR *benchResult
	head := "\t"
	for i := range rep.Results {
		r := &rep.Results[i]
		head += r.Backend + "\t"
		switch {
		case r.Error != "":
		case r.Backend == "go":
			goR = r
		case r.Backend == "go-bf16":
			bfR = r
		case r.Backend == "ort":
			ortR = r
		}
	}
	both := goR != nil && ortR != nil
	if both {
		head += "go/ort\t"
	}
	bfBoth := bfR != nil && ortR != nil
	if bfBoth {
		head += "go-bf16/ort\t"
	}
	fmt.Fprintln(tw, head)
	// optional rows (load memory, decode-only loads) show 0 as "-", not measured, and are left
	// out when no backend has a value.
	optional := false
	row := func(label, unit string, get func(*benchResult) float64, faster func(g, o float64) float64) {
		line := label + "\t"
		measured := false
		for i := range rep.Results {
			r := &rep.Results[i]
			if r.Error != "" || (optional && get(r) == 0) {
				line += "-\t"
				continue
			}
			measured = true
			line += sig3(get(r)) + " " + unit + "\t"
		}
		if !measured && optional {
			return
		}
		ratio := func(a, b *benchResult) string {
			if optional && (get(a) == 0 || get(b) == 0) {
				return "-\t"
			}
			return fmt.Sprintf("%.2f\t", faster(get(a), get(b)))
		}
		if both {
			line += ratio(goR, ortR)
		}
		if bfBoth {
			line += ratio(bfR, ortR)
		}
		fmt.Fprintln(tw, line)
	}
	rate := func(g, o float64) float64 { return g / o }
	inverse := func(g, o float64) float64 { return o / g }
	row("load", "s", func(r *benchResult) float64 { return r.LoadSeconds }, inverse)
	optional = true
	row("load peak RSS", "× f32 weights", func(r *benchResult) float64 { return r.LoadPeakRSS }, inverse)
	row("RSS after load", "× f32 weights", func(r *benchResult) float64 { return r.LoadRSS }, inverse)
	row("decode-only load", "s", func(r *benchResult) float64 { return r.DecodeOnlyLoadSeconds }, inverse)
	row("decode-only peak RSS", "× f32 weights", func(r *benchResult) float64 { return r.DecodeOnlyPeakRSS }, inverse)
	row("RSS after decode-only load", "× f32 weights", func(r *benchResult) float64 { return r.DecodeOnlyRSS }, inverse)
	optional = false
	row("encode", "images/s", func(r *benchResult) float64 { return r.EncodePerSec }, rate)
	row("decode", "images/s", func(r *benchResult) float64 { return r.DecodePerSec }, rate)
	if rep.Steps > 1 {
		row("decoder step", "ms", func(r *benchResult) float64 { return r.StepMillis }, inverse)
	}
	tw.Flush()
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(out, "\n%s: not measured: %s\n", r.Backend, r.Error)
		}
	}
}

// sig3 formats v with three significant digits and no exponent: 1060, 45.8, 0.147.
func sig3(v float64) string {
	if v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return strconv.FormatFloat(v, 'f', max(0, 2-int(math.Floor(math.Log10(v)))), 64)
}
