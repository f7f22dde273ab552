package nn_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/nn"
	"github.com/flextok-sdk/flextok/sdk/nn/nntest"
)

// TestOps pins every op of the eager executor: the portable path gives the same bits on any
// thread count, and the fast path stays within each case's NMSE bound of it (native/onnx
// pins the recorded graphs in ONNX Runtime against the same portable outputs).
func TestOps(t *testing.T) {
	for _, c := range nntest.Cases(1) {
		t.Run(c.Name, func(t *testing.T) {
			want := nntest.Eager(&c, nn.Options{Threads: 1})
			if len(want) != c.OutRows()*c.OutCols() {
				t.Fatalf("%d values, want [%d, %d]", len(want), c.OutRows(), c.OutCols())
			}
			got := nntest.Eager(&c, nn.Options{Threads: 3})
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("threads=3: element %d = %v, threads=1 gives %v", i, got[i], want[i])
				}
			}
			fast := nntest.Eager(&c, nn.Options{Threads: 2, Fast: true})
			e := nntest.NMSE(fast, want)
			t.Logf("fast path: NMSE %.2g (bound %.0g)", e, c.NMSE)
			if !(e <= c.NMSE) {
				t.Fatalf("fast path: NMSE %.3g > %.3g", e, c.NMSE)
			}
		})
	}
}

// TestAttendCached: attending step by step through the KV cache gives the values of one
// causal pass over the whole sequences: exactly on the portable path, within the bound on the
// fast one.
func TestAttendCached(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, fast := range []bool{false, true} {
		o := nn.Options{Threads: 2, Fast: fast}
		N, L, H, hd := 2, 13, 3, 8
		W := H * hd
		qkv := make([]float32, N*L*3*W)
		for i := range qkv {
			qkv[i] = float32(r.NormFloat64())
		}
		scale := float32(8.0 / hd)
		e := nn.NewEager(context.Background(), o)
		full := e.Attention(nn.NewTensor(qkv, N*L, 3*W), H, hd, scale, nn.Seq[nn.Tensor]{L: L, Causal: true})
		c := nn.NewKVCache(N)
		got := make([]float32, N*L*W)
		for pos, step := 0, 1; pos < L; pos, step = pos+step, step+1 { // steps of 1, 2, 3, … tokens
			m := min(step, L-pos)
			in := make([]float32, 0, N*m*3*W)
			for q := 0; q < N; q++ {
				in = append(in, qkv[(q*L+pos)*3*W:(q*L+pos+m)*3*W]...)
			}
			out := e.AttendCached(nn.NewTensor(in, N*m, 3*W), c, H, hd, scale)
			for q := 0; q < N; q++ {
				copy(got[(q*L+pos)*W:(q*L+pos+m)*W], out.Data[q*m*W:(q+1)*m*W])
			}
		}
		if fast {
			if e := nntest.NMSE(got, full.Data); !(e <= 1e-11) {
				t.Fatalf("fast: NMSE %.3g", e)
			}
			continue
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(full.Data[i]) {
				t.Fatalf("portable: element %d = %v, one causal pass gives %v", i, got[i], full.Data[i])
			}
		}
	}
}

// opsGolden is the sha256 of every case's portable output (float32 little-endian, in case
// order). The portable path gives the same bits on every platform, so this also holds under
// GOOS=js and GOOS=wasip1 (make test-wasm) and with -tags purego.
const opsGolden = "4630836eb9eacfd2a3a4469f2cdc428f2bb8f635eebc87f6cc6a25a348c4c514"

// TestOpsGolden pins the portable bits of every op on every platform.
func TestOpsGolden(t *testing.T) {
	h := sha256.New()
	for _, c := range nntest.Cases(1) {
		for _, v := range nntest.Eager(&c, nn.Options{Threads: 2}) {
			binary.Write(h, binary.LittleEndian, math.Float32bits(v))
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != opsGolden {
		t.Fatalf("portable outputs hash to %s, want %s", got, opsGolden)
	}
}
