package engine

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// Bounds against the official PyTorch (float32, CPU) outputs. Both sides compute in float32;
// only the summation order differs (MKL's blocked sgemm and SDPA against our fixed-order
// kernels, FMA on the fast path), which gives relative errors of a few 1e-7 per stage at these
// widths (K ≤ 170), so 1e-5 relative L2 leaves a margin of more than ten.
const (
	boundStage = 1e-5
	whyStage   = "fp32, different summation order"
)

func TestEncoderOfficial(t *testing.T) {
	for _, c := range refCases(t) {
		for _, v := range engineVariants {
			t.Run(c.name+"/"+v.name, func(t *testing.T) {
				enc, err := NewEncoder(c.model, v.o)
				if err != nil {
					t.Fatal(err)
				}
				stages := map[string][]float32{}
				lat := c.f32(t, "vae_latents")
				z, err := enc.registersTrace(context.Background(), enc.opts.kernels(), lat, func(s string, d []float32) { stages[s] = d })
				if err != nil {
					t.Fatal(err)
				}
				// Stage by stage, in execution order: the first failure names the stage that diverged.
				compare(t, "enc_patches_posemb", stages["enc_patches_posemb"], c.f32(t, "enc_patches_posemb").Data, boundStage, whyStage)
				compare(t, "enc_trunk_registers", stages["enc_trunk_registers"], c.f32(t, "enc_trunk_registers").Data, boundStage, whyStage)
				want := c.f32(t, "enc_registers")
				if !tensor.SameShape(z, want) {
					t.Fatalf("enc_registers shape %v, want %v", z.Shape, want.Shape)
				}
				compare(t, "enc_registers", z.Data, want.Data, boundStage, whyStage)

				// FSQ: codes and ids must be exact. The smallest distance of a bounded value to a
				// rounding boundary is fsq_min_margin (MANIFEST.json, ≥ 1.7e-3), far above the
				// ~1e-6 absolute error of enc_registers, so no id may flip.
				quants := make([]float32, len(z.Data))
				enc.fsq.Quantize(quants, z.Data)
				sameBits(t, "quants", quants, c.f32(t, "quants").Data)
				ids, err := enc.Tokens(context.Background(), lat)
				if err != nil {
					t.Fatal(err)
				}
				wantIDs := c.i64(t, "token_ids")
				R := z.Shape[1]
				bounded := make([]float32, len(z.Data))
				enc.fsq.Bound(bounded, z.Data)
				flips := 0
				for i := range ids {
					for j, id := range ids[i] {
						if int64(id) != wantIDs[i*R+j] {
							flips++
							var m []string
							for d := 0; d < 6; d++ {
								b := float64(bounded[(i*R+j)*6+d])
								m = append(m, fmt.Sprintf("%.1e", math.Abs(b-math.Floor(b)-0.5)))
							}
							t.Errorf("token_ids[%d][%d] = %d, want %d (bounded distance to x.5 per dim: %s)", i, j, id, wantIDs[i*R+j], strings.Join(m, " "))
						}
					}
				}
				if flips == 0 {
					t.Logf("%-28s exact (%d ids)", "token_ids", len(wantIDs))
				}
			})
		}
	}
}

// The portable path gives the same bits for any thread count (work is split by rows, heads
// and sequences, never along a reduction).
func TestEncoderThreadsBitIdentical(t *testing.T) {
	for _, c := range refCases(t) {
		lat := c.f32(t, "vae_latents")
		var outs [][]float32
		for _, th := range []int{1, 2} {
			enc, err := NewEncoder(c.model, Options{Threads: th})
			if err != nil {
				t.Fatal(err)
			}
			z, err := enc.Registers(context.Background(), lat)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, z.Data)
		}
		sameBits(t, c.name+": Threads=1 vs 2", outs[0], outs[1])
	}
}

func TestEncoderErrors(t *testing.T) {
	c := refCases(t)[0]
	ctx := context.Background()
	// Missing tensors: one error naming each of them.
	_, err := newEncoder(c.model.Config, getFunc(func(name string) ([]float32, error) {
		if strings.HasSuffix(name, "attn.wq.weight") || strings.HasSuffix(name, "registers") {
			return nil, fmt.Errorf("not found")
		}
		return c.model.Tensor(name)
	}), Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "flextok/engine: ") ||
		!strings.Contains(err.Error(), "blocks.0.attn.wq.weight") || !strings.Contains(err.Error(), "enc_register_module.registers") {
		t.Errorf("missing tensors: got %v", err)
	}

	enc, err := NewEncoder(c.model, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lat := c.f32(t, "vae_latents")
	B, C, h, w := lat.Shape[0], lat.Shape[1], lat.Shape[2], lat.Shape[3]
	S := c.model.Config.Encoder.Posemb.MaxSizes[0] * c.model.Config.Encoder.PatchSize[0]
	bad := []tensor.Tensor{
		{Shape: []int{B, C, h}, Data: make([]float32, B*C*h)},
		{Shape: []int{B, C + 1, h, w}, Data: make([]float32, B*(C+1)*h*w)},
		{Shape: []int{B, C, h + 1, w}, Data: make([]float32, B*C*(h+1)*w)},
		{Shape: []int{B, C, S + 2, w}, Data: make([]float32, B*C*(S+2)*w)},
		{Shape: []int{B, C, h, w}, Data: make([]float32, 3)},
		{Shape: []int{0, C, h, w}},
	}
	for _, x := range bad {
		if _, err := enc.Registers(ctx, x); err == nil || !strings.HasPrefix(err.Error(), "flextok/engine: ") {
			t.Errorf("latents %v (%d values): got %v", x.Shape, len(x.Data), err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := enc.Tokens(cctx, lat); err != context.Canceled {
		t.Errorf("cancelled context: got %v", err)
	}
}
