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
	"time"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/internal/tempfile"
	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// engineFlags are the flags shared by encode and decode.
type engineFlags struct {
	model     string
	threads   int
	exact     bool
	size      int
	precision string
	// parts is the half of the model the command loads, set by the commands that use one
	// direction only (decode and generate: engine.DecodeOnly; encode: EncodeOnly), so that they
	// never hold the other half's weights. Not a flag.
	parts engine.Parts
}

func (f *engineFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.model, "model", "m", "", "model directory or model.safetensors (default: the embedded default model)")
	cmd.Flags().IntVar(&f.threads, "threads", 0, "worker goroutines (0: all CPUs)")
	cmd.Flags().BoolVar(&f.exact, "exact", false, "portable kernels only: the bit-exact reference path (slower)")
	cmd.Flags().StringVar(&f.precision, "precision", "fp32", "Go engine decoder arithmetic: fp32, or bf16 (bfloat16 weights, half the memory; faster on CPUs with AVX512_BF16; the encoder stays fp32)")
	cmd.Flags().IntVar(&f.size, "size", 0, "image side in pixels, any size the model runs at (0: encode at the model's size, decode at the payload's)")
}

// parsePrecision reads --precision ("" as the flag's default, fp32, for engineFlags built in
// code); bf16 with --exact is refused (--exact is the float32 reference).
func (f *engineFlags) parsePrecision() (engine.Precision, error) {
	if f.precision == "" {
		return engine.FP32, nil
	}
	p, err := engine.ParsePrecision(f.precision)
	if err != nil {
		return 0, usageError{fmt.Errorf("--precision %q: want fp32 or bf16", f.precision)}
	}
	if p == engine.BF16 && f.exact {
		return 0, usageError{errors.New("--exact is the float32 reference path: it cannot be combined with --precision bf16")}
	}
	return p, nil
}

func (f *engineFlags) load() (*engine.Engine, error) {
	o := engine.DefaultOptions()
	if f.threads > 0 {
		o.Threads = f.threads
	}
	if f.exact {
		o.Fast = false
	}
	p, err := f.parsePrecision()
	if err != nil {
		return nil, err
	}
	o.Precision = p
	o.Parts = f.parts
	if f.model == "" {
		// The SDK's own small model (models/); official weights are research-only and never
		// bundled or downloaded: give their path with -m.
		return models.LoadDefault(o)
	}
	e, err := engine.Load(f.model, o)
	if err != nil {
		return nil, about("load model", f.model, err)
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

// register adds the flags. Their zero values are never used (options applies only the flags
// set), so that --help shows no default that a payload's hints would contradict; each usage
// says the real default.
func (f *decodeFlags) register(cmd *cobra.Command, seedHelp string) {
	cmd.Flags().IntVar(&f.steps, "steps", 0, "Euler steps (default: the payload's hint, else the model's, else 20)")
	cmd.Flags().Float64Var(&f.guid, "guidance", 0, "classifier-free guidance scale, 1: off (default: the payload's hint, else the model's, else 7.5)")
	cmd.Flags().BoolVar(&f.apg, "apg", false, "adaptive projected guidance instead of plain CFG; --apg=false: CFG (default: the payload's hint, else the model's, else APG)")
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

// checkRunFlags validates the flags encode and decode share, before any work.
func checkRunFlags(out string, batch, k, size int) error {
	switch {
	case out == "":
		return usageError{errors.New("--out is required")}
	case batch < 1:
		return usageError{fmt.Errorf("--batch must be at least 1, got %d", batch)}
	case k < 0:
		return usageError{fmt.Errorf("--tokens must be at least 0, got %d", k)}
	case size < 0:
		return usageError{fmt.Errorf("--size must be at least 0, got %d", size)}
	}
	return nil
}

// existsError is writeNew's refusal to replace path; it matches fs.ErrExist.
type existsError string

func (e existsError) Error() string        { return string(e) + " exists (use --force to replace it)" }
func (e existsError) Is(target error) bool { return target == fs.ErrExist }

// writeNew writes data to path, refusing to replace an existing file unless force: nothing
// the user has is overwritten by accident, not even by a file that appears while this one is
// written (the new file is linked into place, which fails if the name is taken). The file
// appears whole or not at all, with the mode os.WriteFile would give it (0666 less the umask:
// 0644 by default, readable by the other users of a shared volume). Errors name path, not the
// temporary file.
func writeNew(path string, data []byte, force bool) error {
	if !force {
		if _, err := os.Stat(path); err == nil {
			return existsError(path)
		}
	}
	tmp, err := tempfile.Create(filepath.Dir(path), ".flextok-")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write %s: the directory %s does not exist", path, filepath.Dir(path))
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the temporary file's name would only confuse
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
		ef    = engineFlags{parts: engine.DecodeOnly} // decoding never needs the encoder
		bf    backendFlags
		out   string
		k     int
		batch int
		df    decodeFlags
		force bool
	)
	cmd := &cobra.Command{
		Use:   "decode PAYLOAD|DIR... -o OUT [-m MODEL] [-k K]",
		Short: "Decode token payloads (or their first K tokens) into PNG images",
		Long: "Decode each payload (.msgpack; directories are walked recursively for .msgpack files)\n" +
			"with the rectified-flow decoder. -o OUT as for encode: with one file argument, OUT is the\n" +
			"PNG file (or, ending in / or an existing directory, the directory it goes into);\n" +
			"otherwise OUT is a directory that mirrors the inputs: DIR/a/b.msgpack becomes\n" +
			"OUT/a/b.png, so `flextok decode toks -o pngs` undoes `flextok encode imgs -o toks`.\n" +
			"In a directory, PNGs that exist are skipped (--force rewrites them); a single OUT that\n" +
			"exists is an error. A payload that cannot be read, or was made by another model, is\n" +
			"reported and the others go on; the exit status is then 1. Unset --steps, --guidance\n" +
			"and --apg take each payload's hints, else\n" +
			"the model's (its config's decode_hints), else the official README's settings: 20 steps,\n" +
			"guidance 7.5 with APG; an unset --seed takes the payload's seed hint, else 0.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("decode needs at least one payload")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRunFlags(out, batch, k, ef.size); err != nil {
				return err
			}
			if cmd.Flags().Changed("steps") && df.steps < 1 {
				return usageError{fmt.Errorf("--steps must be at least 1, got %d", df.steps)}
			}
			if cmd.Flags().Changed("guidance") && df.guid == 0 {
				return usageError{errors.New("--guidance 0 is not a setting (1 turns guidance off)")}
			}
			if err := checkBackendFlags(cmd, bf.backend, bf.provider); err != nil {
				return err
			}
			jobs, single, err := planTree(args, out, map[string]bool{".msgpack": true}, ".png", "payloads")
			if err != nil {
				return err
			}
			start := time.Now()
			var todo []fileJob
			skipped := 0
			for _, j := range jobs {
				if !force {
					if _, err := os.Stat(j.out); err == nil {
						if single {
							return existsError(j.out)
						}
						skipped++
						continue
					}
				}
				todo = append(todo, j)
			}
			st := decodeStats{skipped: skipped}
			if len(todo) > 0 {
				e, err := openBackend(&bf, &ef, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				defer e.Close()
				ctx, stop := signalContext()
				defer stop()
				if err := runDecode(ctx, e, cmd, &df, todo, k, ef.size, batch, single, force, &st); err != nil {
					return err
				}
			}
			if !single {
				el := time.Since(start)
				fmt.Fprintf(cmd.ErrOrStderr(), "decoded %d, skipped %d, failed %d in %s (%.1f images/s)\n",
					st.decoded, st.skipped, st.failed, el.Round(time.Millisecond), float64(st.decoded)/max(el.Seconds(), 1e-9))
			}
			switch {
			case st.failed == 1:
				return fmt.Errorf("1 of %d payloads failed: %s", len(jobs), st.firstFail)
			case st.failed > 1:
				return fmt.Errorf("%d of %d payloads failed (listed above); the first: %s", st.failed, len(jobs), st.firstFail)
			}
			return nil
		},
	}
	ef.register(cmd)
	bf.register(cmd)
	cmd.Flags().StringVarP(&out, "out", "o", "", "output PNG file, or directory (ending in /, existing, or for a directory or several arguments) (required)")
	cmd.Flags().IntVarP(&k, "tokens", "k", 0, "decode only the first K tokens (0: all in the payload)")
	cmd.Flags().IntVar(&batch, "batch", 8, "payloads decoded together (consecutive ones with the same settings)")
	df.register(cmd, "noise seed (default: the payload's hint, else 0)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace existing output files (default: skip them in a directory, refuse a single OUT)")
	return cmd
}

// decodeStats count what decode did.
type decodeStats struct {
	decoded, skipped, failed int
	firstFail                string
}

// runDecode reads the payloads of todo and decodes them: consecutive payloads with the same
// settings (the flags, else each payload's hints) together, up to batch at a time.
func runDecode(ctx context.Context, e engine.Executor, cmd *cobra.Command, df *decodeFlags, todo []fileJob, k, size, batch int, single, force bool, st *decodeStats) error {
	var pending []decodeJob
	flush := func() error {
		err := decodeJobs(ctx, e, pending, single, force, st)
		pending = pending[:0]
		return err
	}
	stderr := cmd.ErrOrStderr()
	for _, j := range todo {
		data, err := readLimited(j.in, int64(payload.DefaultLimits.MaxBytes))
		p := new(payload.Payload)
		if err == nil {
			err = payload.Decode(data, p, payload.Options{})
		}
		if err == nil && !e.Accepts(&p.Model) {
			id := e.Identity()
			err = fmt.Errorf("payload of model %q (%x…), this model is %q (%x…): %w",
				p.Model.Name, p.Model.Digest[:4], id.Name, id.Digest[:4], engine.ErrModelMismatch)
		}
		if err != nil {
			err = about("decode", j.in, err)
			if single {
				return err
			}
			// In a directory or list, a bad payload is reported and the others go on, as
			// encode does with bad images; the exit status is then 1.
			fmt.Fprintf(stderr, "flextok: %v\n", err)
			if st.failed == 0 {
				st.firstFail = err.Error()
			}
			st.failed++
			continue
		}
		o := df.options(cmd, p, e.Hints())
		o.K, o.Size = k, size
		if len(pending) > 0 && (len(pending) == batch || !sameDecode(pending[0].o, o)) {
			if err := flush(); err != nil {
				return err
			}
		}
		pending = append(pending, decodeJob{fileJob: j, p: p, o: o})
	}
	return flush()
}

// decodeJob is one payload of decode with its resolved settings.
type decodeJob struct {
	fileJob
	p *payload.Payload
	o engine.DecodeOptions
}

// sameDecode reports whether two payloads can be decoded in one batch.
func sameDecode(a, b engine.DecodeOptions) bool {
	return a.K == b.K && a.Steps == b.Steps && a.Guidance == b.Guidance && a.APG == b.APG && a.Seed == b.Seed
}

// decodeJobs decodes jobs (same settings) in one batch and writes their PNGs, making the
// directories they go into. When the batch fails, the payloads are decoded one by one so that
// the error names the file.
func decodeJobs(ctx context.Context, e engine.Executor, jobs []decodeJob, single, force bool, st *decodeStats) error {
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
			return about("decode", jobs[0].in, err)
		}
		for _, j := range jobs {
			if err := decodeJobs(ctx, e, []decodeJob{j}, single, force, st); err != nil {
				return err
			}
		}
		return nil
	}
	for i, j := range jobs {
		img, err := ftimage.FromTensor(imgs[i])
		if err != nil {
			return about("decode", j.in, err)
		}
		var buf bytes.Buffer
		if err := ftimage.EncodePNG(&buf, img); err != nil {
			return err
		}
		if !single {
			if err := os.MkdirAll(filepath.Dir(j.out), 0o777); err != nil {
				return about("decode", j.in, err)
			}
		}
		if err := writeNew(j.out, buf.Bytes(), force); err != nil {
			if errors.Is(err, fs.ErrExist) && !single {
				st.skipped++ // another run wrote it meanwhile
				continue
			}
			return about("decode", j.in, err)
		}
		st.decoded++
	}
	return nil
}
