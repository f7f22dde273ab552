package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/native"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/nn"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// decodeBatchSize is how many generated images generate decodes in one sampler run.
const decodeBatchSize = 16

// newGenerate is `flextok generate`: class-conditional AR generation of token payloads
// (issue #12), with the embedded default AR model unless --ar names another; optionally the
// decoded PNGs and a grid.
func newGenerate() *cobra.Command {
	var (
		ef       = engineFlags{parts: engine.DecodeOnly} // the tokenizer only decodes here
		bf       backendFlags
		arDir    string
		class    string
		n, k     int
		s        = ar.DefaultSampling()
		seed     uint64
		out      string
		pngs     bool
		gridOut  string
		gridCols int
		steps    int
		force    bool
		quiet    bool
	)
	cmd := &cobra.Command{
		Use:   "generate --class NAME|ID[,...] [-n N] [-k K] [-o DIR] [--png] [--grid FILE.png]",
		Short: "Generate images of a class: token payloads from an AR model (default: the embedded one), PNGs on request",
		Long: "Generate N samples of each class given with --class (names or ids of the AR model's classes,\n" +
			"comma-separated; all: every class) with the class-conditional AR model --ar (default: the\n" +
			"embedded default AR model, made for the embedded default tokenizer; docs/ar-checkpoint.md).\n" +
			"Each sample is written as DIR/<class>_<i>.msgpack, an ordinary payload of the tokenizer -m\n" +
			"(default: the embedded default model; an AR model trained for another tokenizer is refused),\n" +
			"which `flextok decode` decodes; --png also writes DIR/<class>_<i>.png, and --grid FILE.png\n" +
			"writes one picture of them all (a row per class, a column per sample; one class: rows of\n" +
			"--grid-cols samples). -k keeps the first K tokens of each sample (coarse to fine).\n\n" +
			"Sampling as LlamaGen's: --cfg S > 1 guides with the null class (--cfg-tokens limits it to the\n" +
			"first tokens), then --temperature, --top-k, --top-p, or --greedy. Options not given come from\n" +
			"the AR config's sampling_hints (the embedded model's: cfg 2), else plain sampling. Sample i\n" +
			"draws from stream (--seed, i): with --exact the same ids on every platform (the browser's\n" +
			"too). --backend ort runs the AR model in ONNX Runtime (the same sampler; docs/native.md).\n" +
			"Progress goes to stderr (-q: none).",
		Example: "  flextok generate --class star -n 8 -o gen --png      # gen/star_000.msgpack, .png, …\n" +
			"  flextok generate --class all -n 6 --grid grid.png     # a row per class\n" +
			"  flextok generate --ar my-ar/ -m my-tokenizer/ --class 3 -n 4 -k 16 --cfg 3 --top-k 100 -o out",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			switch {
			case class == "":
				return usageError{errors.New("--class is required (a class name or id of the AR model, e.g. --class star; all: every class)")}
			case out == "" && gridOut == "":
				return usageError{errors.New("give -o DIR (payloads, and PNGs with --png) or --grid FILE.png, or both")}
			case pngs && out == "":
				return usageError{errors.New("--png writes into -o DIR: give -o")}
			case n < 1:
				return usageError{fmt.Errorf("-n must be at least 1, got %d", n)}
			case fl.Changed("k") && k < 1:
				return usageError{fmt.Errorf("-k must be at least 1, got %d", k)}
			case gridCols < 1:
				return usageError{fmt.Errorf("--grid-cols must be at least 1, got %d", gridCols)}
			case fl.Changed("steps") && steps < 1:
				return usageError{fmt.Errorf("--steps must be at least 1, got %d", steps)}
			case gridOut != "" && !strings.EqualFold(filepath.Ext(gridOut), ".png"):
				return usageError{fmt.Errorf("--grid %s: the grid is a PNG file (FILE.png)", gridOut)}
			}
			if err := checkBackendFlags(cmd, bf.backend, bf.provider); err != nil {
				return err
			}
			var (
				m      *ar.Model
				arName = "the embedded default AR model"
				err    error
			)
			if arDir == "" {
				m, err = models.DefaultAR().Model()
			} else {
				arName = arDir
				m, err = ar.Load(arDir)
			}
			if err != nil {
				return about("load AR model", arDir, err)
			}
			// Check what can be checked before the tokenizer loads.
			classes, names, err := parseClasses(m.Cfg, class)
			if err != nil {
				return usageError{err}
			}
			if !fl.Changed("k") {
				k = m.Cfg.BlockSize
			} else if k > m.Cfg.BlockSize {
				return usageError{fmt.Errorf("-k %d: the AR model makes 1 to %d tokens", k, m.Cfg.BlockSize)}
			}
			s = samplingWithHints(fl, s, m.Cfg.Hints)
			if err := s.Check(); err != nil {
				return usageError{flagError(err)}
			}
			if s.CFG > 1 && !m.Cfg.HasNull() {
				return usageError{fmt.Errorf("--cfg %g: %s has no null class (class_dropout 0), so it cannot guide; use --cfg 1", s.CFG, arName)}
			}
			eng, err := ef.load()
			if err != nil {
				return err
			}
			defer eng.Close()
			o := ar.Options{Tokenizer: eng, Exec: nn.Options{Fast: !ef.exact, Threads: ef.threads}}
			if bf.backend == "ort" {
				if err := m.CheckTokenizer(eng.Identity()); err != nil {
					return about("load AR model", arDir, err)
				}
				b, err := native.NewAR(m, nativeOptions(&bf, &ef, cmd.ErrOrStderr()))
				if err != nil {
					return fmt.Errorf("--backend ort: %w", err)
				}
				defer b.Close()
				o.Executor = b
			}
			g, err := ar.NewGenerator(m, o)
			if err != nil {
				return about("load AR model", arDir, err)
			}
			if out != "" {
				if err := os.MkdirAll(out, 0o777); err != nil {
					return err
				}
			}
			all := make([]int, 0, len(classes)*n)
			files := make([]string, 0, cap(all))
			for ci, c := range classes {
				for i := range n {
					all = append(all, c)
					files = append(files, fmt.Sprintf("%s_%03d", names[ci], i))
				}
			}
			if !force && out != "" {
				// Refuse before the work, not after it.
				for _, f := range files {
					for _, ext := range pngExts(pngs) {
						if p := filepath.Join(out, f+ext); exists(p) {
							return existsError(p)
						}
					}
				}
			}
			if gridOut != "" && !force && exists(gridOut) {
				return existsError(gridOut)
			}
			ctx, stop := signalContext()
			defer stop()
			progress := newLine(cmd.ErrOrStderr(), quiet)
			progress.printf("generating %d × %d tokens (%s, cfg %g) with %s\n", len(all), k, strings.Join(names, ", "), s.CFG, m.Cfg.Name)
			req := ar.Request{Classes: all, K: k, Sampling: s, Seed: seed, OnToken: func(t int, _ []uint32) error {
				progress.update("token %d/%d", t+1, k)
				return nil
			}}
			ps, err := g.Generate(ctx, req)
			progress.done()
			if err != nil {
				if errors.Is(err, ar.ErrArgument) {
					return usageError{flagError(err)}
				}
				return err
			}
			if out != "" {
				for i, p := range ps {
					b, err := p.MarshalBinary()
					if err != nil {
						return err
					}
					if err := writeNew(filepath.Join(out, files[i]+".msgpack"), b, force); err != nil {
						return err
					}
				}
			}
			var imgs []image.Image
			if pngs || gridOut != "" {
				if imgs, err = decodeGenerated(ctx, eng, ps, steps, fl.Changed("steps"), progress); err != nil {
					return err
				}
			}
			if pngs {
				for i, img := range imgs {
					var buf bytes.Buffer
					if err := ftimage.EncodePNG(&buf, img); err != nil {
						return err
					}
					if err := writeNew(filepath.Join(out, files[i]+".png"), buf.Bytes(), force); err != nil {
						return err
					}
				}
			}
			if gridOut != "" {
				cols := n
				if len(classes) == 1 {
					cols = min(n, gridCols)
				}
				var rows [][]image.Image
				for at := 0; at < len(imgs); {
					end := at + cols
					if len(classes) > 1 {
						end = at + n
					}
					end = min(end, len(imgs))
					rows = append(rows, imgs[at:end])
					at = end
				}
				gimg, err := ftimage.Grid(rows, gridPad)
				if err != nil {
					return fmt.Errorf("grid: %w", err)
				}
				var buf bytes.Buffer
				if err := ftimage.EncodePNG(&buf, gimg); err != nil {
					return err
				}
				if err := writeNew(gridOut, buf.Bytes(), force); err != nil {
					return err
				}
			}
			switch {
			case out != "" && pngs:
				progress.printf("wrote %d payloads and PNGs (%d tokens each) to %s\n", len(ps), k, out)
			case out != "":
				progress.printf("wrote %d payloads (%d tokens each) to %s (PNGs: flextok decode %s -o PNGS, or --png)\n", len(ps), k, out, out)
			}
			if gridOut != "" {
				progress.printf("wrote the grid %s (%d images)\n", gridOut, len(imgs))
			}
			return nil
		},
	}
	ef.register(cmd)
	bf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&arDir, "ar", "", "AR checkpoint directory (config.json and model.safetensors; default: the embedded default AR model)")
	f.StringVar(&class, "class", "", "class names or ids of the AR model, comma-separated; all: every class (the embedded model's: circle, ring, square, triangle, cross, star, hexagon, crescent)")
	f.IntVarP(&n, "n", "n", 1, "samples per class")
	f.IntVarP(&k, "k", "k", 0, "tokens per sample, 1 to the tokenizer's maximum (default: the maximum)")
	f.Float64Var(&s.CFG, "cfg", 1, "classifier-free guidance scale, > 1: guided")
	f.IntVar(&s.GuidedTokens, "cfg-tokens", 0, "guide only the first N tokens (0: every token)")
	f.Float64Var(&s.Temperature, "temperature", 1, "sampling temperature, ≥ 0")
	f.IntVar(&s.TopK, "top-k", 0, "keep the K most likely ids, 0: off (default: the AR config's hint, else 0)")
	f.Float64Var(&s.TopP, "top-p", 1, "nucleus mass in (0, 1], 1: off")
	f.BoolVar(&s.Greedy, "greedy", false, "take the most likely id instead of drawing")
	f.Uint64Var(&seed, "seed", 0, "seed of the draws (sample i uses stream i)")
	f.StringVarP(&out, "out", "o", "", "output directory of the payloads (and PNGs with --png)")
	f.BoolVar(&pngs, "png", false, "also decode each sample and write DIR/<class>_<i>.png")
	f.StringVar(&gridOut, "grid", "", "write a PNG grid of the decoded samples: a row per class, a column per sample")
	f.IntVar(&gridCols, "grid-cols", 8, "with one class, samples per grid row")
	f.IntVar(&steps, "steps", 0, "Euler steps of the decodes for --png and --grid (default: the tokenizer's hint, else 20)")
	for _, name := range []string{"cfg", "temperature", "top-p"} {
		f.Lookup(name).DefValue = "the AR config's hint, else 1"
	}
	f.BoolVar(&force, "force", false, "replace existing files")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	return cmd
}

// samplingWithHints fills the sampling flags the user did not set from the AR config's
// sampling_hints (the service does the same for requests without them).
func samplingWithHints(fl interface{ Changed(string) bool }, s ar.Sampling, h *ar.SamplingHints) ar.Sampling {
	if h == nil {
		return s
	}
	if h.CFGScale != nil && !fl.Changed("cfg") {
		s.CFG = *h.CFGScale
	}
	if h.CFGInterval != nil && !fl.Changed("cfg-tokens") && *h.CFGInterval >= 0 {
		s.GuidedTokens = *h.CFGInterval + 2 // LlamaGen's cfg_interval c guides tokens 0..c+1
	}
	if h.Temperature != nil && !fl.Changed("temperature") {
		s.Temperature = *h.Temperature
	}
	if h.TopK != nil && !fl.Changed("top-k") {
		s.TopK = *h.TopK
	}
	if h.TopP != nil && !fl.Changed("top-p") {
		s.TopP = *h.TopP
	}
	return s
}

// flagError rewords a sampling error of sdk/ar in terms of the flag at fault ("temperature
// -1: want ≥ 0" → "--temperature -1: want ≥ 0").
func flagError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, ar.ErrArgument.Error()+": "); i >= 0 {
		msg = msg[i+len(ar.ErrArgument.Error())+2:]
	}
	for _, f := range []struct{ word, flag string }{{"cfg scale ", "--cfg "}, {"temperature ", "--temperature "}, {"top-k ", "--top-k "},
		{"top-p ", "--top-p "}, {"guided tokens ", "--cfg-tokens "}, {"k = ", "-k "}} {
		if strings.HasPrefix(msg, f.word) {
			return errors.New(f.flag + strings.TrimPrefix(msg, f.word))
		}
	}
	return err
}

func pngExts(pngs bool) []string {
	if pngs {
		return []string{".msgpack", ".png"}
	}
	return []string{".msgpack"}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// decodeGenerated decodes the generated payloads (with the tokenizer's hints unless steps is
// set), a batch at a time.
func decodeGenerated(ctx context.Context, eng *engine.Engine, ps []*payload.Payload, steps int, setSteps bool, progress *line) ([]image.Image, error) {
	o := engine.HintedDecodeOptions(ps[0], eng.Hints())
	if setSteps {
		o.Steps = steps
	}
	var imgs []image.Image
	for at := 0; at < len(ps); at += decodeBatchSize {
		batch := ps[at:min(at+decodeBatchSize, len(ps))]
		step := 0
		o.OnStep = func(flow.Step) error {
			step++
			progress.update("decoding %d–%d of %d: step %d/%d", at+1, at+len(batch), len(ps), step, o.Steps)
			return nil
		}
		ts, err := eng.DecodeBatch(ctx, batch, o)
		if err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		for _, t := range ts {
			img, err := ftimage.FromTensor(t)
			if err != nil {
				return nil, fmt.Errorf("decode: %w", err)
			}
			imgs = append(imgs, img)
		}
	}
	progress.done()
	return imgs, nil
}

// parseClasses resolves --class: names or ids, comma-separated, or "all".
func parseClasses(c *ar.Config, s string) (ids []int, names []string, err error) {
	if s == "all" {
		for i := range c.NumClasses {
			ids = append(ids, i)
			names = append(names, className(c, i))
		}
		return ids, names, nil
	}
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		id, err := classID(c, strings.TrimSpace(part))
		if err != nil {
			return nil, nil, err
		}
		if seen[id] {
			return nil, nil, fmt.Errorf("--class %q: class %s given twice", s, className(c, id))
		}
		seen[id] = true
		ids = append(ids, id)
		names = append(names, className(c, id))
	}
	return ids, names, nil
}

func className(c *ar.Config, id int) string {
	if id < len(c.Classes) {
		return c.Classes[id]
	}
	return strconv.Itoa(id)
}

// classID resolves a class name of the AR config, or an id.
func classID(c *ar.Config, s string) (int, error) {
	for i, n := range c.Classes {
		if n == s {
			return i, nil
		}
	}
	id, err := strconv.Atoi(s)
	if err != nil || id < 0 || id >= c.NumClasses {
		if len(c.Classes) > 0 {
			return 0, fmt.Errorf("--class %q: not a class of the AR model (%d classes: %s; or ids 0..%d)", s, c.NumClasses, strings.Join(c.Classes, ", "), c.NumClasses-1)
		}
		return 0, fmt.Errorf("--class %q: not a class of the AR model (ids 0..%d; its config names no classes)", s, c.NumClasses-1)
	}
	return id, nil
}

// line is generate's progress on stderr: a line per phase, and on a terminal a status line
// redrawn in place (token t/k, decode steps); nothing with -q. Logs and pipes get no carriage
// returns.
type line struct {
	w     io.Writer
	quiet bool
	tty   bool
	open  bool
}

func newLine(w io.Writer, quiet bool) *line {
	l := &line{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok {
		l.tty = term.IsTerminal(int(f.Fd()))
	}
	return l
}

func (l *line) printf(format string, a ...any) {
	if l.quiet {
		return
	}
	l.done()
	fmt.Fprintf(l.w, format, a...)
}

// update redraws the progress line (a terminal only: elsewhere progress is the printf lines).
func (l *line) update(format string, a ...any) {
	if l.quiet || !l.tty {
		return
	}
	fmt.Fprintf(l.w, "\r\033[K"+format, a...)
	l.open = true
}

func (l *line) done() {
	if l.open {
		fmt.Fprintln(l.w)
		l.open = false
	}
}
