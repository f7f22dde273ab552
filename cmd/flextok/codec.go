package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// engineFlags are the flags shared by encode and decode.
type engineFlags struct {
	model   string
	threads int
	exact   bool
}

func (f *engineFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.model, "model", "m", "", "model directory or model.safetensors (default: the embedded default model)")
	cmd.Flags().IntVar(&f.threads, "threads", 0, "worker goroutines (0: all CPUs)")
	cmd.Flags().BoolVar(&f.exact, "exact", false, "portable kernels only: the bit-exact reference path (slower)")
}

func (f *engineFlags) load() (*engine.Engine, error) {
	o := engine.DefaultOptions()
	if f.threads > 0 {
		o.Threads = f.threads
	}
	if f.exact {
		o.Fast = false
	}
	if f.model == "" {
		// The SDK's own small model (models/); official weights are research-only and never
		// bundled or downloaded: give their path with -m.
		return models.LoadDefault(o)
	}
	e, err := engine.Load(f.model, o)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", f.model, err)
	}
	return e, nil
}

// signalContext is cancelled on Ctrl-C or SIGTERM (a container stopping), so work stops cleanly.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// imageExts are the file types a directory argument contributes.
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".gif": true, ".webp": true, ".bmp": true, ".tif": true, ".tiff": true}

// expandInputs lists files: each argument is a file, or a directory whose files with one of
// exts are taken (not recursively), in name order.
func expandInputs(args []string, exts map[string]bool) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		entries, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, e := range entries {
			if !e.IsDir() && exts[strings.ToLower(filepath.Ext(e.Name()))] {
				names = append(names, filepath.Join(a, e.Name()))
			}
		}
		sort.Strings(names)
		out = append(out, names...)
	}
	if len(out) == 0 {
		return nil, usageError{errors.New("no input files")}
	}
	return out, nil
}

// decodeFlags are the decode settings shared by decode and eval. A flag the user did not set
// leaves the payload's hints (or the engine's defaults) in place.
type decodeFlags struct {
	steps int
	guid  float64
	apg   bool
	seed  uint64
}

func (f *decodeFlags) register(cmd *cobra.Command, seedHelp string) {
	cmd.Flags().IntVar(&f.steps, "steps", 20, "Euler steps")
	cmd.Flags().Float64Var(&f.guid, "guidance", 7.5, "classifier-free guidance scale (1: off)")
	cmd.Flags().BoolVar(&f.apg, "apg", true, "adaptive projected guidance instead of plain CFG")
	cmd.Flags().Uint64Var(&f.seed, "seed", 0, seedHelp)
}

// options returns the settings p decodes with by default on a model with decode hints model
// (engine.HintedDecodeOptions) with the flags the user set applied.
func (f *decodeFlags) options(cmd *cobra.Command, p *payload.Payload, model *payload.Hints) engine.DecodeOptions {
	o := engine.HintedDecodeOptions(p, model)
	fl := cmd.Flags()
	if fl.Changed("steps") {
		o.Steps = f.steps
	}
	if fl.Changed("guidance") {
		o.Guidance = f.guid
	}
	if fl.Changed("apg") {
		o.APG = f.apg
	}
	if fl.Changed("seed") {
		o.Seed = f.seed
	}
	return o
}

// prepareBatch lists the inputs and, for several, makes the output directory; single reports
// one input, whose output is out itself unless out is a directory.
func prepareBatch(args []string, exts map[string]bool, out string) (inputs []string, single bool, err error) {
	if out == "" {
		return nil, false, usageError{errors.New("--out is required")}
	}
	if inputs, err = expandInputs(args, exts); err != nil {
		return nil, false, err
	}
	single = len(inputs) == 1
	if !single {
		err = os.MkdirAll(out, 0o755)
	}
	return inputs, single, err
}

// outputPath returns where the output for in goes: out itself for a single input that does not
// name a directory, else out/<base name><ext>.
func outputPath(in, out, ext string, single bool) string {
	if single {
		if st, err := os.Stat(out); err != nil || !st.IsDir() {
			return out
		}
	}
	base := strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))
	return filepath.Join(out, base+ext)
}

// existsError is writeNew's refusal to replace path; it matches fs.ErrExist.
type existsError string

func (e existsError) Error() string        { return string(e) + " exists (use --force to replace it)" }
func (e existsError) Is(target error) bool { return target == fs.ErrExist }

// writeNew writes data to path, refusing to replace an existing file unless force: nothing
// the user has is overwritten by accident, not even by a file that appears while this one is
// written (the new file is linked into place, which fails if the name is taken). The file
// appears whole or not at all. Errors name path, not the temporary file.
func writeNew(path string, data []byte, force bool) error {
	if !force {
		if _, err := os.Stat(path); err == nil {
			return existsError(path)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".flextok-*")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write %s: the directory %s does not exist", path, filepath.Dir(path))
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !force {
		err := os.Link(tmp.Name(), path)
		if errors.Is(err, fs.ErrExist) {
			return existsError(path)
		}
		if err == nil {
			return nil
		}
		// No hard links on this file system: the Stat above has to do.
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newDecode() *cobra.Command {
	var (
		ef    engineFlags
		bf    backendFlags
		out   string
		k     int
		batch int
		df    decodeFlags
		force bool
	)
	cmd := &cobra.Command{
		Use:   "decode PAYLOAD|DIR... -m MODEL -o OUT.png",
		Short: "Decode token payloads (or their first K tokens) into PNG images",
		Long: "Decode each payload (.msgpack; directories contribute their .msgpack files) with the\n" +
			"rectified-flow decoder. Unset flags take the payload's hints, else the official\n" +
			"README's settings: 20 steps, guidance 7.5 with APG, seed 0.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("decode needs at least one payload")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkBackendFlags(cmd, bf.backend, bf.provider); err != nil {
				return err
			}
			inputs, single, err := prepareBatch(args, map[string]bool{".msgpack": true}, out)
			if err != nil {
				return err
			}
			e, closeExec, err := openBackend(&bf, &ef, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeExec()
			ctx, stop := signalContext()
			defer stop()
			if batch < 1 {
				return usageError{fmt.Errorf("--batch must be at least 1, got %d", batch)}
			}
			// Consecutive payloads with the same settings (the flags, else each payload's
			// hints) are decoded together, up to --batch at a time.
			var pending []decodeJob
			flush := func() error {
				err := decodeJobs(ctx, e, pending, out, single, force)
				pending = pending[:0]
				return err
			}
			for _, in := range inputs {
				data, err := readLimited(in, int64(payload.DefaultLimits.MaxBytes))
				if err != nil {
					return err
				}
				p := new(payload.Payload)
				if err := payload.Decode(data, p, payload.Options{}); err != nil {
					return fmt.Errorf("decode %s: %w", in, err)
				}
				o := df.options(cmd, p, e.Hints())
				o.K = k
				if o.Steps < 1 {
					return usageError{fmt.Errorf("--steps must be at least 1, got %d", o.Steps)}
				}
				if o.Guidance == 0 {
					return usageError{errors.New("--guidance 0 is not a setting (1 turns guidance off)")}
				}
				if len(pending) > 0 && (len(pending) == batch || !sameDecode(pending[0].o, o)) {
					if err := flush(); err != nil {
						return err
					}
				}
				pending = append(pending, decodeJob{in: in, p: p, o: o})
			}
			return flush()
		},
	}
	ef.register(cmd)
	bf.register(cmd)
	cmd.Flags().StringVarP(&out, "out", "o", "", "output PNG file or directory (required)")
	cmd.Flags().IntVarP(&k, "tokens", "k", 0, "decode only the first K tokens (0: all in the payload)")
	cmd.Flags().IntVar(&batch, "batch", 8, "payloads decoded together (consecutive ones with the same settings)")
	df.register(cmd, "noise seed")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace existing output files")
	return cmd
}

// decodeJob is one payload of decode with its resolved settings.
type decodeJob struct {
	in string
	p  *payload.Payload
	o  engine.DecodeOptions
}

// sameDecode reports whether two payloads can be decoded in one batch.
func sameDecode(a, b engine.DecodeOptions) bool {
	return a.K == b.K && a.Steps == b.Steps && a.Guidance == b.Guidance && a.APG == b.APG && a.Seed == b.Seed
}

// decodeJobs decodes jobs (same settings) in one batch and writes their PNGs. When the batch
// fails, the payloads are decoded one by one so that the error names the file.
func decodeJobs(ctx context.Context, e executor, jobs []decodeJob, out string, single, force bool) error {
	if len(jobs) == 0 {
		return nil
	}
	o := jobs[0].o
	label := filepath.Base(jobs[0].in)
	if len(jobs) > 1 {
		label = fmt.Sprintf("%s +%d", label, len(jobs)-1)
	}
	bar := newBar(o.Steps, label)
	o.OnStep = func(flow.Step) error { bar.add(1); return nil }
	ps := make([]*payload.Payload, len(jobs))
	for i, j := range jobs {
		ps[i] = j.p
	}
	imgs, err := e.DecodeBatch(ctx, ps, o)
	bar.finish()
	if err != nil {
		if ctx.Err() != nil || len(jobs) == 1 {
			return fmt.Errorf("decode %s: %w", jobs[0].in, err)
		}
		for _, j := range jobs {
			if err := decodeJobs(ctx, e, []decodeJob{j}, out, single, force); err != nil {
				return err
			}
		}
		return nil
	}
	for i, j := range jobs {
		img, err := ftimage.FromTensor(imgs[i])
		if err != nil {
			return fmt.Errorf("decode %s: %w", j.in, err)
		}
		var buf bytes.Buffer
		if err := ftimage.EncodePNG(&buf, img); err != nil {
			return err
		}
		if err := writeNew(outputPath(j.in, out, ".png", single), buf.Bytes(), force); err != nil {
			return fmt.Errorf("decode %s: %w", j.in, err)
		}
	}
	return nil
}
