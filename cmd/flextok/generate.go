package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/flextok-sdk/flextok/native"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/nn"
)

// newGenerate is `flextok generate`: class-conditional AR generation of token payloads
// (issue #12). PNGs come from `flextok decode` of the written payloads.
func newGenerate() *cobra.Command {
	var (
		ef    engineFlags
		bf    backendFlags
		arDir string
		class string
		n, k  int
		s     = ar.DefaultSampling()
		seed  uint64
		out   string
		force bool
		quiet bool
	)
	cmd := &cobra.Command{
		Use:   "generate --ar AR_DIR --class NAME|ID -o DIR [-n N] [-k K]",
		Short: "Generate token payloads of a class with an AR model (decode them with flextok decode)",
		Long: "Generate N samples of a class with the AR checkpoint AR_DIR (docs/ar-checkpoint.md)\n" +
			"for the tokenizer -m (default: the embedded default model; an AR model trained for another\n" +
			"tokenizer is refused). Each sample is written as DIR/<class>_<i>.msgpack, an ordinary\n" +
			"payload: `flextok decode DIR -o PNGS` makes the images. Sampling as LlamaGen: --cfg S > 1\n" +
			"guides with the null class (--cfg-tokens limits it to the first tokens), then temperature,\n" +
			"top-k, top-p, or --greedy. The same --seed gives the same ids with --exact on every platform.\n" +
			"--backend ort runs the AR model in ONNX Runtime (the same sampler; greedy ids equal the Go\n" +
			"executor's, docs/native.md).",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if arDir == "" || class == "" || out == "" {
				return usageError{errors.New("--ar, --class and -o are required")}
			}
			if n < 1 {
				return usageError{fmt.Errorf("-n must be at least 1, got %d", n)}
			}
			if err := checkBackendFlags(cmd, bf.backend, bf.provider); err != nil {
				return err
			}
			eng, err := ef.load()
			if err != nil {
				return err
			}
			m, err := ar.Load(arDir)
			if err != nil {
				return about("load AR model", arDir, err)
			}
			cl, err := classID(m.Cfg, class)
			if err != nil {
				return usageError{err}
			}
			if !cmd.Flags().Changed("k") {
				k = m.Cfg.BlockSize
			}
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
			if err := os.MkdirAll(out, 0o777); err != nil {
				return err
			}
			classes := make([]int, n)
			for i := range classes {
				classes[i] = cl
			}
			ctx, stop := signalContext()
			defer stop()
			req := ar.Request{Classes: classes, K: k, Sampling: s, Seed: seed}
			if !quiet {
				req.OnToken = func(t int, _ []uint32) error {
					fmt.Fprintf(cmd.ErrOrStderr(), "\rtoken %d/%d", t+1, k)
					return nil
				}
			}
			ps, err := g.Generate(ctx, req)
			if !quiet {
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			if err != nil {
				if errors.Is(err, ar.ErrArgument) {
					return usageError{err}
				}
				return err
			}
			name := class
			if len(m.Cfg.Classes) > cl {
				name = m.Cfg.Classes[cl]
			}
			for i, p := range ps {
				b, err := p.MarshalBinary()
				if err != nil {
					return err
				}
				if err := writeNew(filepath.Join(out, fmt.Sprintf("%s_%03d.msgpack", name, i)), b, force); err != nil {
					return err
				}
			}
			if !quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d payloads of class %s (%d tokens) to %s\n", n, name, k, out)
			}
			return nil
		},
	}
	ef.register(cmd)
	bf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&arDir, "ar", "", "AR checkpoint directory (config.json and model.safetensors)")
	f.StringVar(&class, "class", "", "class name (the AR config's classes) or id")
	f.IntVarP(&n, "n", "n", 1, "samples")
	f.IntVarP(&k, "k", "k", 0, "tokens per sample, 1 to the tokenizer's maximum (default: the maximum)")
	f.Float64Var(&s.CFG, "cfg", 1, "classifier-free guidance scale (> 1: guided)")
	f.IntVar(&s.GuidedTokens, "cfg-tokens", 0, "guide only the first N tokens (0: every token)")
	f.Float64Var(&s.Temperature, "temperature", 1, "sampling temperature (≥ 0)")
	f.IntVar(&s.TopK, "top-k", 0, "keep the K most likely ids (0: off)")
	f.Float64Var(&s.TopP, "top-p", 1, "nucleus mass in (0, 1] (1: off)")
	f.BoolVar(&s.Greedy, "greedy", false, "take the most likely id instead of drawing")
	f.Uint64Var(&seed, "seed", 0, "seed of the draws")
	f.StringVarP(&out, "out", "o", "", "output directory")
	f.BoolVar(&force, "force", false, "replace existing payloads")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	return cmd
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
		return 0, fmt.Errorf("--class %q: not a class of the AR model (%d classes: names %v, or ids 0..%d)", s, c.NumClasses, c.Classes, c.NumClasses-1)
	}
	return id, nil
}
