package fsq

import (
	"path/filepath"
	"testing"

	"github.com/flextok-sdk/flextok/internal/safetensors"
)

// TestOfficialTokens quantises the official encoder's pre-FSQ registers (enc_registers, made by
// the official PyTorch code, see conformance/testdata/official/README.md) and requires the
// official token ids and quants exactly.
func TestOfficialTokens(t *testing.T) {
	cases, _ := filepath.Glob("../../conformance/testdata/official/*/reference.safetensors")
	if len(cases) == 0 {
		t.Skip("no official reference data")
	}
	q := Default()
	for _, path := range cases {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			f, err := safetensors.OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			z, err := f.ReadFloat32("enc_registers")
			if err != nil {
				t.Fatal(err)
			}
			wantIDs, err := f.ReadInt64("token_ids")
			if err != nil {
				t.Fatal(err)
			}
			wantQ, err := f.ReadFloat32("quants")
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]uint32, len(z)/q.Dim())
			q.Encode(ids, z)
			if len(ids) != len(wantIDs) {
				t.Fatalf("%d ids, want %d", len(ids), len(wantIDs))
			}
			for i := range ids {
				if int64(ids[i]) != wantIDs[i] {
					t.Fatalf("token %d: id %d, official %d (z = %v)", i, ids[i], wantIDs[i], z[i*6:i*6+6])
				}
			}
			codes := make([]float32, len(z))
			q.Quantize(codes, z)
			for i := range codes {
				if codes[i] != wantQ[i] {
					t.Fatalf("quant %d: %v, official %v", i, codes[i], wantQ[i])
				}
			}
			// The margin to the nearest rounding boundary tells how safe the exact match is.
			b := make([]float32, len(z))
			q.Bound(b, z)
			margin := 1.0
			for _, v := range b {
				frac := float64(v) - float64(int64(v))
				if frac < 0 {
					frac = -frac
				}
				margin = min(margin, abs(frac-0.5))
			}
			t.Logf("%d tokens exact; smallest distance to a rounding boundary %.4f", len(ids), margin)
		})
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestOfficialBoundaries compares with the official FSQ module on latents placed within a few
// float32 ulps of every rounding boundary (conformance/testdata/fsq, made by
// tools/reference/make_fsq_reference.py). Ids may differ only where PyTorch's float32 tanh and
// ours round the bounded value to different sides of a boundary; the test counts such flips,
// requires each to be one level apart in one dimension, and bounds their number.
func TestOfficialBoundaries(t *testing.T) {
	f, err := safetensors.OpenFile("../../conformance/testdata/fsq/reference.safetensors")
	if err != nil {
		t.Skip("no FSQ reference data:", err)
	}
	defer f.Close()
	z, err := f.ReadFloat32("z")
	if err != nil {
		t.Fatal(err)
	}
	want, err := f.ReadInt64("token_ids")
	if err != nil {
		t.Fatal(err)
	}
	q := Default()
	ids := make([]uint32, len(want))
	q.Encode(ids, z)
	flips := 0
	a, b := make([]float32, 6), make([]float32, 6)
	for i := range ids {
		if int64(ids[i]) == want[i] {
			continue
		}
		flips++
		_ = q.Code(a, ids[i])
		_ = q.Code(b, uint32(want[i]))
		diff := 0
		for d := range a {
			if a[d] != b[d] {
				diff++
				step := 1 / float32(q.halfWidth[d])
				if a[d]-b[d] != step && b[d]-a[d] != step {
					t.Errorf("vector %d dim %d: codes %v vs official %v are not adjacent levels", i, d, a[d], b[d])
				}
			}
		}
		if diff != 1 {
			t.Errorf("vector %d: %d dimensions differ", i, diff)
		}
	}
	t.Logf("%d of %d boundary-probing vectors flipped (adjacent level, one dimension)", flips, len(ids))
	// Every probe sits within 8 ulps of a boundary; a flip needs the two tanh results to differ
	// and straddle it. More than 2% would mean a systematic difference, not last-bit rounding.
	if flips*50 > len(ids) {
		t.Fatalf("%d flips of %d", flips, len(ids))
	}
}
