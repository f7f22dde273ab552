// Command areval measures the class-conditional AR generator over the default tokenizer's
// tokens (issue #12 item 4) with the recipe's evaluation classifier, all in Go:
//
//   - the classifier's accuracy on held-out real images (the real-data row);
//   - for each k: held-out images reconstructed from their first k tokens (the tokenizer's
//     ceiling) and generated samples (n per class, every class) cut to their first k tokens
//     and decoded: the classifier's accuracy against the class each should show, and a proxy
//     FID, the Fréchet distance between the classifier's 64 penultimate features of the set and
//     of a disjoint reference set of held-out real images.
//
// The proxy FID is NOT ImageNet FID (no Inception network, a 64-feature classifier trained on
// this synthetic data set): it compares rows of this table with each other only, at equal set
// sizes. The held-out directory holds NNN_<class>.png files (train/export_heldout.py); its
// first half is reconstructed, its second half is the FID reference.
//
//	go run ./train/cmd/areval -heldout train/eval/heldout -classifier train/eval/classifier.safetensors -o train/eval/ar
//
// A generated sample's first k tokens are the k-token sample (the model is causal and each
// token takes one draw), so one 32-token generation gives every column.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/ar"
	"github.com/flextok-sdk/flextok/sdk/engine"
	sdkimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/nn"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

type flags struct {
	heldout, classifier, arDir, out string
	model                           string
	n                               int
	ks, cfgs, gridKs                string
	temperature, topP               float64
	topK, gridCols, threads         int
	seed                            uint64
	steps                           int
	guidance                        float64
	quiet                           bool
}

func main() {
	var f flags
	flag.StringVar(&f.heldout, "heldout", "", "directory of held-out images NNN_<class>.png (train/export_heldout.py), required")
	flag.StringVar(&f.classifier, "classifier", "", "the evaluation classifier (train/eval/classifier.safetensors), required")
	flag.StringVar(&f.arDir, "ar", "", "AR checkpoint directory (docs/ar-checkpoint.md; default: the embedded default AR model)")
	flag.StringVar(&f.out, "o", "", "output directory: areval.json and the grids (optional)")
	flag.StringVar(&f.model, "m", "", "tokenizer model directory (default: the embedded default model); with another tokenizer use -n 0 (reconstructions only) or an -ar made for it")
	flag.IntVar(&f.n, "n", 32, "generated samples per class (0: reconstructions only)")
	flag.StringVar(&f.ks, "ks", "1,2,4,8,16,32", "token counts")
	flag.StringVar(&f.cfgs, "cfg", "", "guidance scales to evaluate, comma-separated (default: 1 and the model's hint)")
	flag.Float64Var(&f.temperature, "temperature", 1, "sampling temperature")
	flag.IntVar(&f.topK, "top-k", 0, "top-k (0: off)")
	flag.Float64Var(&f.topP, "top-p", 1, "top-p (1: off)")
	flag.Uint64Var(&f.seed, "seed", 0, "seed of the draws (the decode noise seed is 0)")
	flag.StringVar(&f.gridKs, "grid-ks", "4,32", "token counts of the PNG grids (rows: classes; columns: samples)")
	flag.IntVar(&f.gridCols, "grid-cols", 10, "samples per class in the grids")
	flag.IntVar(&f.threads, "threads", 0, "worker goroutines (0: all CPUs)")
	flag.IntVar(&f.steps, "steps", 0, "decode: Euler steps (0: the tokenizer's hint)")
	flag.Float64Var(&f.guidance, "guidance", 0, "decode: guidance scale (0: the tokenizer's hint; 1: off)")
	flag.BoolVar(&f.quiet, "q", false, "no progress on stderr")
	flag.Parse()
	if err := run(context.Background(), f, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "areval:", err)
		os.Exit(1)
	}
}

// Row is one line of the table.
type Row struct {
	Set      string             `json:"set"` // "real", "reconstruction", "generated"
	K        int                `json:"k,omitempty"`
	CFG      float64            `json:"cfg,omitempty"`
	N        int                `json:"n"`
	Accuracy float64            `json:"accuracy"`
	ProxyFID float64            `json:"proxy_fid"`
	PerClass map[string]float64 `json:"per_class,omitempty"`
}

type scored struct {
	pred int
	feat []float64
}

func ints(s, name string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("-%s %q: want positive integers, comma-separated", name, s)
		}
		out = append(out, v)
	}
	return out, nil
}

func run(ctx context.Context, f flags, stdout io.Writer) error {
	if f.heldout == "" || f.classifier == "" {
		return errors.New("need -heldout and -classifier (see -h)")
	}
	if f.n == 1 || f.n < 0 {
		return fmt.Errorf("-n %d: need at least 2 samples per class (a covariance), or 0 (no generation)", f.n)
	}
	ks, err := ints(f.ks, "ks")
	if err != nil {
		return err
	}
	gridKs, err := ints(f.gridKs, "grid-ks")
	if err != nil {
		return err
	}
	progress := func(format string, a ...any) {
		if !f.quiet {
			fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", a...)
		}
	}
	threads := f.threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	cls, err := loadClassifier(f.classifier)
	if err != nil {
		return err
	}
	eo := engine.Options{Threads: threads, Fast: true}
	var eng *engine.Engine
	if f.model == "" {
		eng, err = models.LoadDefault(eo)
	} else {
		eng, err = engine.Load(f.model, eo)
	}
	if err != nil {
		return err
	}
	var arm *ar.Model
	if f.arDir == "" {
		arm, err = models.DefaultAR().Model()
	} else {
		arm, err = ar.Load(f.arDir)
	}
	if err != nil {
		return err
	}
	var gen *ar.Generator
	if f.n > 0 {
		if gen, err = ar.NewGenerator(arm, ar.Options{Tokenizer: eng, Exec: nn.Options{Threads: threads, Fast: true}}); err != nil {
			return err
		}
	}
	names := arm.Cfg.Classes
	if len(names) == 0 {
		return fmt.Errorf("%s: the AR config names no classes; areval needs them to label the held-out images", f.arDir)
	}
	if len(names) != cls.classes {
		return fmt.Errorf("the classifier has %d classes, the AR model %d", cls.classes, len(names))
	}
	cfgs := []float64{1}
	if f.cfgs != "" {
		cfgs = nil
		for _, p := range strings.Split(f.cfgs, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || v < 0 {
				return fmt.Errorf("-cfg %q: want non-negative numbers, comma-separated", f.cfgs)
			}
			cfgs = append(cfgs, v)
		}
	} else if h := arm.Cfg.Hints; h != nil && h.CFGScale != nil && *h.CFGScale > 1 {
		cfgs = append(cfgs, *h.CFGScale)
	}
	if f.n == 0 {
		cfgs = nil // reconstructions only
	}

	imgs, labels, err := readHeldout(f.heldout, names)
	if err != nil {
		return err
	}
	half := len(imgs) / 2
	if half < 2 {
		return fmt.Errorf("%s: %d images, need at least 4", f.heldout, len(imgs))
	}
	progress("%d held-out images: %d reconstructed, %d as the FID reference", len(imgs), half, len(imgs)-half)
	classify := func(ims []*image.NRGBA) ([]scored, error) {
		out := make([]scored, len(ims))
		for i, im := range ims {
			lg, ft, err := cls.run(im)
			if err != nil {
				return nil, err
			}
			out[i] = scored{argmax(lg), ft}
		}
		return out, nil
	}
	all, err := classify(imgs)
	if err != nil {
		return err
	}
	ref := feats(all[half:])
	row := func(set string, k int, cfg float64, s []scored, want []int) (Row, error) {
		fid, err := frechet(feats(s), ref)
		if err != nil {
			return Row{}, err
		}
		r := Row{Set: set, K: k, CFG: cfg, N: len(s), ProxyFID: fid, PerClass: map[string]float64{}}
		hit, per, tot := 0, make([]int, len(names)), make([]int, len(names))
		for i, x := range s {
			tot[want[i]]++
			if x.pred == want[i] {
				hit++
				per[want[i]]++
			}
		}
		r.Accuracy = float64(hit) / float64(len(s))
		for c, name := range names {
			if tot[c] > 0 {
				r.PerClass[name] = float64(per[c]) / float64(tot[c])
			}
		}
		return r, nil
	}
	var rows []Row
	all2 := append([]scored(nil), all...)
	r, err := row("real", 0, 0, all2[:half], labels[:half])
	if err != nil {
		return err
	}
	rows = append(rows, r)
	heldAcc := 0
	for i, s := range all {
		if s.pred == labels[i] {
			heldAcc++
		}
	}
	progress("classifier accuracy on all %d held-out images: %.4f", len(all), float64(heldAcc)/float64(len(all)))

	// Reconstructions: encode the first half once, decode every k.
	ps := make([]*payload.Payload, half)
	for i := range half {
		if ps[i], err = eng.Encode(ctx, imgs[i], engine.EncodeOptions{}); err != nil {
			return err
		}
	}
	decode := func(ps []*payload.Payload, k int) ([]*image.NRGBA, error) {
		out := make([]*image.NRGBA, len(ps))
		const chunk = 32
		for i := 0; i < len(ps); i += chunk {
			ts, err := eng.DecodeBatch(ctx, ps[i:min(i+chunk, len(ps))], engine.DecodeOptions{K: k, Steps: f.steps, Guidance: f.guidance})
			if err != nil {
				return nil, err
			}
			for j, t := range ts {
				if out[i+j], err = sdkimage.FromTensor(t); err != nil {
					return nil, err
				}
			}
		}
		return out, nil
	}
	for _, k := range ks {
		t0 := time.Now()
		dec, err := decode(ps, k)
		if err != nil {
			return err
		}
		s, err := classify(dec)
		if err != nil {
			return err
		}
		r, err := row("reconstruction", k, 0, s, labels[:half])
		if err != nil {
			return err
		}
		rows = append(rows, r)
		progress("reconstruction k=%d: accuracy %.3f, proxy FID %.3f (%s)", k, r.Accuracy, r.ProxyFID, time.Since(t0).Round(time.Second))
	}

	// Generation: n samples of every class at the largest k, every k a prefix.
	maxK := 0
	for _, k := range append(append([]int(nil), ks...), gridKs...) {
		maxK = max(maxK, k)
	}
	grids := map[string]*image.NRGBA{}
	for _, cfg := range cfgs {
		t0 := time.Now()
		var classes []int
		for c := range names {
			for range f.n {
				classes = append(classes, c)
			}
		}
		req := ar.Request{Classes: classes, K: maxK, Seed: f.seed}
		req.CFG, req.Temperature, req.TopK, req.TopP = cfg, f.temperature, f.topK, f.topP
		gp, err := gen.Generate(ctx, req)
		if err != nil {
			return err
		}
		progress("generated %d samples × %d tokens with cfg %g (%s)", len(gp), maxK, cfg, time.Since(t0).Round(time.Second))
		decoded := map[int][]*image.NRGBA{}
		for _, k := range uniq(append(append([]int(nil), ks...), gridKs...)) {
			t0 := time.Now()
			dec, err := decode(gp, k)
			if err != nil {
				return err
			}
			decoded[k] = dec
			if !contains(ks, k) {
				continue
			}
			s, err := classify(dec)
			if err != nil {
				return err
			}
			r, err := row("generated", k, cfg, s, classes)
			if err != nil {
				return err
			}
			rows = append(rows, r)
			progress("generated k=%d cfg %g: accuracy %.3f, proxy FID %.3f (%s)", k, cfg, r.Accuracy, r.ProxyFID, time.Since(t0).Round(time.Second))
		}
		for _, k := range gridKs {
			cells := make([][]image.Image, len(names))
			for c := range names {
				for j := range min(f.gridCols, f.n) {
					cells[c] = append(cells[c], decoded[k][c*f.n+j])
				}
			}
			g, err := sdkimage.Grid(cells, 1)
			if err != nil {
				return err
			}
			grids[fmt.Sprintf("grid_cfg%g_k%d.png", cfg, k)] = g
		}
	}
	writeTable(stdout, rows, names, f, len(all), float64(heldAcc)/float64(len(all)))
	if f.out == "" {
		return nil
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	doc := map[string]any{
		"rows": rows, "classes": names, "n_per_class": f.n, "seed": f.seed,
		"temperature": f.temperature, "top_k": f.topK, "top_p": f.topP,
		"heldout_images": len(all), "heldout_accuracy": float64(heldAcc) / float64(len(all)),
		"reconstructed": half, "fid_reference": len(all) - half, "ar": arm.Cfg.Name,
		"decode_steps": f.steps, "decode_guidance": f.guidance,
		"note": "proxy FID: Fréchet distance of the evaluation classifier's 64 features to held-out real images; not ImageNet FID",
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	if err := os.WriteFile(filepath.Join(f.out, "areval.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	for name, g := range grids {
		fh, err := os.Create(filepath.Join(f.out, name))
		if err != nil {
			return err
		}
		if err := sdkimage.EncodePNG(fh, g); err != nil {
			fh.Close()
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	progress("wrote %s", f.out)
	return nil
}

func feats(s []scored) [][]float64 {
	out := make([][]float64, len(s))
	for i, x := range s {
		out[i] = x.feat
	}
	return out
}

func uniq(v []int) []int {
	sort.Ints(v)
	out := v[:0]
	for i, x := range v {
		if i == 0 || x != v[i-1] {
			out = append(out, x)
		}
	}
	return out
}

func contains(v []int, x int) bool {
	for _, y := range v {
		if y == x {
			return true
		}
	}
	return false
}

// readHeldout reads NNN_<class>.png files in name order as 32×32 8-bit RGB images.
func readHeldout(dir string, names []string) ([]*image.NRGBA, []int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	idx := map[string]int{}
	for i, n := range names {
		idx[n] = i
	}
	var imgs []*image.NRGBA
	var labels []int
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".png") {
			continue
		}
		_, cls, ok := strings.Cut(strings.TrimSuffix(name, ".png"), "_")
		c, known := idx[cls]
		if !ok || !known {
			return nil, nil, fmt.Errorf("%s: want NNN_<class>.png with a class of %v", filepath.Join(dir, name), names)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, err
		}
		im, _, err := sdkimage.DecodeBytes(b, sdkimage.DecodeOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		nr := image.NewNRGBA(image.Rect(0, 0, 32, 32))
		bd := im.Bounds()
		if bd.Dx() != 32 || bd.Dy() != 32 {
			return nil, nil, fmt.Errorf("%s: %dx%d, want 32x32", name, bd.Dx(), bd.Dy())
		}
		for y := range 32 {
			for x := range 32 {
				nr.Set(x, y, im.At(bd.Min.X+x, bd.Min.Y+y))
			}
		}
		imgs = append(imgs, nr)
		labels = append(labels, c)
	}
	return imgs, labels, nil
}

func writeTable(w io.Writer, rows []Row, names []string, f flags, nHeld int, heldAcc float64) {
	fmt.Fprintf(w, "# classifier accuracy on %d held-out real images: %.1f%%\n", nHeld, 100*heldAcc)
	fmt.Fprintf(w, "# generated: %d per class × %d classes, seed %d, temperature %g, top-k %d, top-p %g\n", f.n, len(names), f.seed, f.temperature, f.topK, f.topP)
	fmt.Fprintln(w, "# proxy FID: Fréchet distance of the classifier's 64 features to held-out real images (not ImageNet FID)")
	fmt.Fprintln(w, "| set | k | cfg | n | class accuracy | proxy FID |")
	fmt.Fprintln(w, "|-----|---|-----|---|----------------|-----------|")
	for _, r := range rows {
		k, cfg := "all", "-"
		if r.Set != "real" {
			k = strconv.Itoa(r.K)
		}
		if r.Set == "generated" {
			cfg = strconv.FormatFloat(r.CFG, 'g', -1, 64)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %.1f%% | %.2f |\n", r.Set, k, cfg, r.N, 100*r.Accuracy, r.ProxyFID)
	}
}
