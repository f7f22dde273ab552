package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// drivenLine is one JSON line of `flextok bench --driven`: first the loads (Ready), then one
// line per op that stdin asked for.
type drivenLine struct {
	Ready   bool               `json:"ready,omitempty"`
	Model   string             `json:"model,omitempty"`
	Steps   int                `json:"steps,omitempty"`
	LoadS   map[string]float64 `json:"load_s,omitempty"`
	Backend string             `json:"backend,omitempty"`
	Op      string             `json:"op,omitempty"`
	Seconds float64            `json:"seconds,omitempty"`
	Error   string             `json:"error,omitempty"`
}

// drivenOps are the ops --driven runs, as tools/reference/bench_torch.py times the official
// code: tokenize (Encode of one image at the model's size) and decode (one image's guided
// decode: --steps Euler steps, default 20, guidance 7.5 with APG, the official README's).
var drivenOps = []string{"tokenize", "decode"}

// runDriven is `flextok bench --driven`: it loads every backend of names once, prints a ready
// line, then runs the op of each stdin line ("<backend> <op>") once and prints its time. It
// returns at the end of stdin. A bad line or a failed op is reported on its line and the next
// one is read.
func runDriven(cmd *cobra.Command, names []string, ef engineFlags, provider, cache string, steps int) error {
	out, stderr := json.NewEncoder(cmd.OutOrStdout()), cmd.ErrOrStderr()
	out.SetEscapeHTML(false)
	type arm struct {
		ex  engine.Executor
		img image.Image
		p   *payload.Payload
	}
	arms := map[string]*arm{}
	ready := drivenLine{Ready: true, LoadS: map[string]float64{}}
	if steps == 0 {
		steps = engine.OfficialSteps
	}
	ready.Steps = steps
	for _, name := range names {
		bf := backendFlags{backend: name, provider: provider, cache: cache}
		efn := ef
		if name == "go-bf16" {
			bf.backend, efn.precision = "go", "bf16"
		}
		start := time.Now()
		ex, err := openBackend(&bf, &efn, stderr)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer ex.Close()
		ready.LoadS[name] = time.Since(start).Seconds()
		h, w := ex.ImageSize()
		a := &arm{ex: ex, img: benchImage(0, w, h)}
		// The payload the decode op decodes: this backend's own tokens of the image.
		if a.p, err = ex.Encode(cmd.Context(), a.img, engine.EncodeOptions{}); err != nil {
			return fmt.Errorf("%s: encode: %w", name, err)
		}
		arms[name] = a
		ready.Model = ex.Identity().Name
	}
	if err := out.Encode(ready); err != nil {
		return err
	}
	do := engine.DecodeOptions{Steps: steps, Guidance: engine.OfficialGuidance, APG: engine.OfficialAPG}
	in := bufio.NewScanner(cmd.InOrStdin())
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		res := drivenLine{}
		f := strings.Fields(line)
		var a *arm
		switch {
		case len(f) != 2:
			res.Error = fmt.Sprintf("%q: want \"<backend> <op>\"", line)
		case arms[f[0]] == nil:
			res.Error = fmt.Sprintf("backend %q: not loaded (--backends %s)", f[0], strings.Join(names, ","))
		default:
			res.Backend, res.Op, a = f[0], f[1], arms[f[0]]
		}
		if a != nil {
			var run func() error
			switch res.Op {
			case "tokenize":
				run = func() error { _, err := a.ex.Encode(cmd.Context(), a.img, engine.EncodeOptions{}); return err }
			case "decode":
				run = func() error { _, err := a.ex.Decode(cmd.Context(), a.p, do); return err }
			default:
				res.Error = fmt.Sprintf("op %q: want one of %s", res.Op, strings.Join(drivenOps, ", "))
			}
			if run != nil {
				start := time.Now()
				if err := run(); err != nil {
					res.Error = err.Error()
				} else {
					res.Seconds = time.Since(start).Seconds()
				}
			}
		}
		if err := out.Encode(res); err != nil {
			return err
		}
	}
	if err := in.Err(); err != nil && err != io.EOF {
		return err
	}
	return nil
}
