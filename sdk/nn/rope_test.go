package nn_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/nn"
)

// TestRotary holds Rotary to a float64 reference of LlamaGen's rotation and repeat_interleave
// on random shapes (grouped and plain heads, the zero table of negative positions), with the
// same bits on the fast path (the op is one portable loop).
func TestRotary(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ H, Hkv, hd int }{{1, 1, 2}, {4, 2, 8}, {4, 4, 16}, {6, 3, 4}, {8, 1, 6}} {
		rows := 1 + r.IntN(9)
		in := make([]float32, rows*(c.H+2*c.Hkv)*c.hd)
		for i := range in {
			in[i] = float32(r.NormFloat64())
		}
		pos := make([]float32, rows)
		for i := range pos {
			pos[i] = float32(r.IntN(40) - 1)
		}
		freqs := nn.RotaryFrequencies(c.hd, 10000)
		var outs [2][]float32
		for k, o := range []nn.Options{{}, {Fast: true}} {
			e := nn.NewEager(context.Background(), o)
			y := e.Rotary(nn.NewTensor(in, rows, len(in)/rows), nn.NewTensor(pos, rows, 1), c.H, c.Hkv, c.hd, freqs)
			outs[k] = append([]float32(nil), y.Data...)
		}
		for i := range outs[0] {
			if outs[0][i] != outs[1][i] {
				t.Fatalf("%+v: fast path differs at %d", c, i)
			}
		}
		W, C := c.H*c.hd, (c.H+2*c.Hkv)*c.hd
		var worst float64
		for row := 0; row < rows; row++ {
			src, got := in[row*C:(row+1)*C], outs[0][row*3*W:(row+1)*3*W]
			for part := 0; part < 3; part++ {
				for h := 0; h < c.H; h++ {
					var s []float32
					switch part {
					case 0:
						s = src[h*c.hd:]
					case 1:
						s = src[W+h/(c.H/c.Hkv)*c.hd:]
					default:
						s = src[W+c.Hkv*c.hd+h/(c.H/c.Hkv)*c.hd:]
					}
					for j := 0; j < c.hd/2; j++ {
						x0, x1 := float64(s[2*j]), float64(s[2*j+1])
						w0, w1 := x0, x1
						if part < 2 {
							cs, sn := 0.0, 0.0
							if pos[row] >= 0 {
								a := float64(pos[row]) / math.Pow(10000, float64(2*j)/float64(c.hd))
								cs, sn = math.Cos(a), math.Sin(a)
							}
							w0, w1 = x0*cs-x1*sn, x1*cs+x0*sn
						}
						o := got[part*W+h*c.hd+2*j:]
						worst = max(worst, math.Abs(float64(o[0])-w0), math.Abs(float64(o[1])-w1))
					}
				}
			}
		}
		if worst > 2e-5 {
			t.Fatalf("%+v: max abs error %.3g against float64", c, worst)
		}
	}
}
