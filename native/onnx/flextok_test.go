//go:build cgo

package onnx

import (
	"context"
	"math"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/fsq"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// TestDecoderGraph: the velocity graph against the Go engine's decoder on every test model,
// with conditional items of several prefix lengths and an unconditional item in one batch.
func TestDecoderGraph(t *testing.T) {
	needORT(t)
	for _, tm := range testModels(t) {
		for _, half := range []bool{false, true} {
			name := tm.name
			if half {
				name += "/fp16"
			}
			t.Run(name, func(t *testing.T) { testDecoderGraph(t, tm, half) })
		}
	}
}

// Bounds of the decoder graph against the engine: float32 (measured NMSE <= 2.3e-13, max
// error <= 5.7e-7) and with float16 Linear layers (measured NMSE <= 1.1e-7, max error <= 3.9e-4).
var decoderBounds = map[bool][2]float64{false: {1e-11, 1e-5}, true: {1e-6, 2e-3}}

func testDecoderGraph(t *testing.T, tm testModel, half bool) {
	{
		{
			s, err := ModelSizes(tm.m.Config, 0)
			if err != nil {
				t.Fatal(err)
			}
			s.FP16 = half
			g, err := Decoder(tm.m, s)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := engine.NewDecoder(tm.m, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			q, _ := fsq.New(tm.m.Config.FSQ.Levels)
			rng := flow.NewNormal(7, 0)
			ks := []int{s.R, 1, (s.R + 1) / 2, 0} // 0: unconditional
			n := len(ks)
			ids := make([][]uint32, n)
			idsIn := make([]int64, n*s.R)
			for i := range ids {
				ids[i] = make([]uint32, s.R)
				for j := range ids[i] {
					ids[i][j] = uint32(rng.Uint64() % uint64(q.CodebookSize()))
					idsIn[i*s.R+j] = int64(ids[i][j])
				}
			}
			bindK := make([]int, n)
			kIn := make([]int64, n)
			for i, k := range ks {
				bindK[i], kIn[i] = max(k, 1), int64(k)
			}
			cond, err := dec.Bind(ids, bindK)
			if err != nil {
				t.Fatal(err)
			}
			tv := float32(0.37 * tm.m.Config.Decoder.MaxTimestep)
			per := s.C * s.H * s.W
			xs := make([]float32, n*per)
			rng.Fill(xs)
			items := make([]flow.Item, n)
			for i := range items {
				items[i] = flow.Item{Image: i, Uncond: ks[i] == 0, X: tensor.Tensor{Shape: []int{s.C, s.H, s.W}, Data: xs[i*per : (i+1)*per]}}
			}
			if err := cond.Velocity(context.Background(), tv, items); err != nil {
				t.Fatal(err)
			}
			ts := make([]float32, n)
			for i := range ts {
				ts[i] = tv
			}
			out, _ := runGraph(t, g, []input{
				{name: InX, shape: []int64{int64(n), int64(s.C), int64(s.H), int64(s.W)}, f32: xs},
				{name: InT, shape: []int64{int64(n)}, f32: ts},
				{name: InIDs, shape: []int64{int64(n), int64(s.R)}, i64: idsIn},
				{name: InK, shape: []int64{int64(n)}, i64: kIn},
			}, OutV)
			for i := range items {
				nmse, rel := errStats(out[0][i*per:(i+1)*per], items[i].V.Data)
				t.Logf("item %d (k=%d): NMSE %.2g, max error %.2g of the range", i, ks[i], nmse, rel)
				if b := decoderBounds[half]; nmse > b[0] || rel > b[1] {
					t.Errorf("item %d (k=%d): NMSE %.3g, max relative error %.3g: over the bounds %g, %g", i, ks[i], nmse, rel, b[0], b[1])
				}
			}
		}
	}
}

// TestEncoderGraph: the encoder graph (VAE encoder, register encoder, FSQ) against the Go
// engine on every test model: z within bounds, ids equal, or each differing id explained by a
// bounded value within 1e-4 of a rounding boundary (float differences decide such ties).
func TestEncoderGraph(t *testing.T) {
	needORT(t)
	for _, tm := range testModels(t) {
		t.Run(tm.name, func(t *testing.T) {
			s, err := ModelSizes(tm.m.Config, 0)
			if err != nil {
				t.Fatal(err)
			}
			g, err := Encoder(tm.m, s)
			if err != nil {
				t.Fatal(err)
			}
			vae, err := engine.NewVAE(tm.m, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			enc, err := engine.NewEncoder(tm.m, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			const n = 3
			img := make([]float32, n*3*s.Height*s.Width)
			flow.NewNormal(11, 0).Fill(img)
			for i := range img {
				img[i] = float32(math.Tanh(float64(img[i]))) // in (-1, 1)
			}
			lat, err := vae.Encode(context.Background(), tensor.Tensor{Shape: []int{n, 3, s.Height, s.Width}, Data: img})
			if err != nil {
				t.Fatal(err)
			}
			z, err := enc.Registers(context.Background(), lat)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := runGraph(t, g, []input{{name: InImage, shape: []int64{n, 3, int64(s.Height), int64(s.Width)}, f32: img}}, OutZ, OutIDs)
			nmse, rel := errStats(out[0], z.Data)
			t.Logf("z: NMSE %.2g, max error %.2g of the range", nmse, rel)
			if nmse > 1e-11 || rel > 1e-5 { // measured: NMSE <= 6.5e-13, max error <= 1.5e-6
				t.Errorf("z: NMSE %.3g, max relative error %.3g: over the bounds 1e-11, 1e-5", nmse, rel)
			}
			q, _ := fsq.New(tm.m.Config.FSQ.Levels)
			checkIDs(t, q, z.Data, out[1])
		})
	}
}

// checkIDs compares graph ids with the Go quantiser's ids of the Go latents zGo; a differing
// id must come from latents within 1e-4 of a rounding boundary (fsq TieDistance).
func checkIDs(t *testing.T, q *fsq.Quantizer, zGo []float32, got []float32) {
	t.Helper()
	D := q.Dim()
	ids := make([]uint32, len(zGo)/D)
	q.Encode(ids, zGo)
	flips := 0
	for i, id := range ids {
		if uint32(got[i]) == id {
			continue
		}
		flips++
		if d := q.TieDistance(zGo[i*D : (i+1)*D]); d >= 1e-4 {
			t.Errorf("token %d: id %d, the Go engine %d, bounded values %.2g from a rounding boundary", i, int(got[i]), id, d)
		}
	}
	t.Logf("ids: %d of %d differ from the Go engine's", flips, len(ids))
}
