package native

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/model"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// BenchmarkInterleaved measures the Go engine in fp32 and bf16 (engine.Options.Precision) and
// ONNX Runtime's CPU provider on a d12 checkpoint, interleaved: every round runs each arm of
// an op once, in turn (A, B, C, A, B, C, ...), so that the machine's noise (other jobs, clock
// changes) falls on all arms alike. It prints, per op and arm, the median and range over the
// rounds and the ratio of medians to Go fp32 and to ORT, with the CPU model, its bf16/AMX
// flags and the load average (make bench-bf16; docs/benchmarks.md):
//
//	FLEXTOK_ORT_LIB=$PWD/.deps/ort/libonnxruntime.so FLEXTOK_D12=/tmp/d12 FLEXTOK_ROUNDS=5 \
//	  go test ./native -run '^$' -bench Interleaved -benchtime 1x -timeout 60m -v
//
// Ops (256 px, GOMAXPROCS threads on every side):
//
//   - load: engine.Load of the checkpoint (ORT's session build is not comparable: left out).
//   - step: one guided decoder step (cond + uncond of one image), a new t each call.
//   - vae-decode: the VAE decoder on one latent (bf16: its convolutions in bf16).
//   - tokenize: Engine/Backend.EncodeTensor of one image (the encoder is fp32 in both).
//   - decode-20: a full 20-step guided (APG, 7.5) decode of one payload.
//
// FLEXTOK_OPS (a comma-separated list of op names, e.g. vae-decode) runs only those ops.
func BenchmarkInterleaved(b *testing.B) {
	dir := os.Getenv("FLEXTOK_D12")
	if dir == "" {
		b.Skip("FLEXTOK_D12 (a d12 checkpoint directory, see tools/mkcheckpoint) is not set")
	}
	rounds := 5
	if s := os.Getenv("FLEXTOK_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("FLEXTOK_ROUNDS=%q: want a positive integer", s)
		}
		rounds = n
	}
	o := needORT(b)
	threads := runtime.GOMAXPROCS(0)
	o.IntraOpThreads = threads
	ctx := context.Background()
	load := loadAvg()

	fp32 := engine.DefaultOptions()
	bf16 := fp32
	bf16.Precision = engine.BF16
	var loads [2]time.Duration
	start := time.Now()
	e32, err := engine.Load(dir, fp32)
	if err != nil {
		b.Fatal(err)
	}
	loads[0] = time.Since(start)
	start = time.Now()
	e16, err := engine.Load(dir, bf16)
	if err != nil {
		b.Fatal(err)
	}
	loads[1] = time.Since(start)
	m, err := model.LoadFile(dir)
	if err != nil {
		b.Fatal(err)
	}
	be, err := New(m, o)
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	cfg := m.Config
	dec32, err := engine.NewDecoder(m, fp32)
	if err != nil {
		b.Fatal(err)
	}
	dec16, err := engine.NewDecoder(m, bf16)
	if err != nil {
		b.Fatal(err)
	}
	vae, err := engine.NewVAE(m, fp32)
	if err != nil {
		b.Fatal(err)
	}
	vae16, err := engine.NewVAE(m, bf16)
	if err != nil {
		b.Fatal(err)
	}
	m.Close()
	runtime.GC()

	H, W := e32.ImageSize()
	lat := cfg.Geometry().Latent(H, W)
	C, h, w := lat[0], lat[1], lat[2]
	R := e32.MaxTokens()
	ids := [][]uint32{benchIDs(R, cfg.CodebookSize(), 1)}
	x := benchTensor(3, C, h, w)
	items := func() []flow.Item {
		v := func() tensor.Tensor { return tensor.Tensor{Shape: []int{C, h, w}, Data: make([]float32, C*h*w)} }
		return []flow.Item{{Image: 0, X: x, V: v()}, {Image: 0, Uncond: true, X: x, V: v()}}
	}
	var conds []flow.Denoiser
	for _, bind := range []func([][]uint32, []int) (flow.Denoiser, error){
		func(i [][]uint32, k []int) (flow.Denoiser, error) { return dec32.Bind(i, k) },
		func(i [][]uint32, k []int) (flow.Denoiser, error) { return dec16.Bind(i, k) },
		func(i [][]uint32, k []int) (flow.Denoiser, error) { return be.Bind(i, k) },
	} {
		c, err := bind(ids, nil)
		if err != nil {
			b.Fatal(err)
		}
		conds = append(conds, c)
	}
	step := 0
	stepArm := func(d flow.Denoiser) func() error {
		batch := items()
		return func() error {
			step++
			return d.Velocity(ctx, 1-float32(step%97+1)/99, batch)
		}
	}
	latent := benchTensor(5, 1, C, h, w)
	img := benchTensor(4, 1, 3, H, W)
	for i := range img.Data {
		img.Data[i] = max(-1, min(1, img.Data[i]*0.5))
	}
	p := &payload.Payload{Model: e32.Identity(), Image: payload.Image{Height: H, Width: W}, IDs: ids[0]}
	do := engine.DecodeOptions{Steps: 20, Guidance: 7.5, APG: true, Seed: 1}
	decodeArm := func(ex engine.Executor) func() error {
		return func() error { _, err := ex.Decode(ctx, p, do); return err }
	}
	type arm struct {
		name string
		fn   func() error
	}
	ops := []struct {
		name string
		arms []arm
	}{
		{"step", []arm{{"go-fp32", stepArm(conds[0])}, {"go-bf16", stepArm(conds[1])}, {"ort", stepArm(conds[2])}}},
		{"vae-decode", []arm{
			{"go-fp32", func() error { _, err := vae.Decode(ctx, latent); return err }},
			{"go-bf16", func() error { _, err := vae16.Decode(ctx, latent); return err }},
			{"ort", func() error { _, err := be.DecodeLatents(ctx, latent); return err }},
		}},
		{"tokenize", []arm{
			{"go", func() error { _, err := e32.EncodeTensor(ctx, img); return err }},
			{"ort", func() error { _, err := be.EncodeTensor(ctx, img); return err }},
		}},
		{"decode-20", []arm{{"go-fp32", decodeArm(e32)}, {"go-bf16", decodeArm(e16)}, {"ort", decodeArm(be)}}},
	}

	if s := os.Getenv("FLEXTOK_OPS"); s != "" {
		want := strings.Split(s, ",")
		ops = slices.DeleteFunc(ops, func(op struct {
			name string
			arms []arm
		}) bool {
			return !slices.Contains(want, op.name)
		})
		if len(ops) == 0 {
			b.Fatalf("FLEXTOK_OPS=%q names no op (step, vae-decode, tokenize, decode-20)", s)
		}
	}

	var rep strings.Builder
	fmt.Fprintf(&rep, "CPU %s, flags %s, GOMAXPROCS %d, ORT IntraOpThreads %d, bf16 path %q, %d rounds\n",
		cpuModel(), cpuFlags("avx512f", "avx512_bf16", "amx_tile", "amx_bf16"), threads, o.IntraOpThreads, engine.BF16Path(), rounds)
	fmt.Fprintf(&rep, "load average before: %s\n", load)
	fmt.Fprintf(&rep, "load (one each, before the rounds): go-fp32 %.2fs, go-bf16 %.2fs (%.2fx)\n",
		loads[0].Seconds(), loads[1].Seconds(), loads[0].Seconds()/loads[1].Seconds())
	tw := tabwriter.NewWriter(&rep, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tarm\tmedian s\tmin s\tmax s\tgo-fp32/arm\tort/arm\t")
	for _, op := range ops {
		times := make([][]float64, len(op.arms))
		for _, a := range op.arms { // warm-up, untimed
			if err := a.fn(); err != nil {
				b.Fatalf("%s/%s: %v", op.name, a.name, err)
			}
		}
		for r := 0; r < rounds; r++ {
			for i, a := range op.arms {
				t0 := time.Now()
				if err := a.fn(); err != nil {
					b.Fatalf("%s/%s: %v", op.name, a.name, err)
				}
				times[i] = append(times[i], time.Since(t0).Seconds())
			}
		}
		med := make([]float64, len(op.arms))
		for i := range times {
			slices.Sort(times[i])
			med[i] = median(times[i])
		}
		ref, ort := med[0], med[len(med)-1]
		for i, a := range op.arms {
			fmt.Fprintf(tw, "%s\t%s\t%.4f\t%.4f\t%.4f\t%.2f\t%.2f\t\n", op.name, a.name, med[i], times[i][0], times[i][len(times[i])-1], ref/med[i], ort/med[i])
		}
	}
	tw.Flush()
	fmt.Fprintf(&rep, "load average after: %s\n", loadAvg())
	b.Log("\n" + rep.String())
	fmt.Println(rep.String())
}

func median(s []float64) float64 {
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// loadAvg is /proc/loadavg's first three fields ("?" where unreadable).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cpuModel is /proc/cpuinfo's first "model name".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// cpuFlags lists which of want /proc/cpuinfo's first "flags" line has (name+ or name-).
func cpuFlags(want ...string) string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<16), 1<<20)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		have := strings.Fields(v)
		var out []string
		for _, w := range want {
			if slices.Contains(have, w) {
				out = append(out, w+"+")
			} else {
				out = append(out, w+"-")
			}
		}
		return strings.Join(out, " ")
	}
	return "?"
}
