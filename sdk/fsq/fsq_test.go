package fsq

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestConstants(t *testing.T) {
	q := Default()
	if q.CodebookSize() != 64000 {
		t.Fatalf("codebook size %d, want 64000", q.CodebookSize())
	}
	if got, want := q.Basis(), []int{1, 8, 64, 512, 2560, 12800}; !slices.Equal(got, want) {
		t.Fatalf("basis %v, want %v", got, want)
	}
	// half_l: PyTorch multiplies the int32 levels by the Python float 1.001 in float32
	// (float32(1.001) = 1.00100004673), so half_l is 3.5035002 rather than float32(3.5035).
	if q.halfL[0] != 3.5035002 || q.halfL[3] != float32(2.002) {
		t.Fatalf("half_l %v", q.halfL)
	}
	if q.offset[0] != 0.5 || q.offset[3] != 0 || q.shift[3] != 0 {
		t.Fatalf("offset %v shift %v", q.offset, q.shift)
	}
	// atanh(0.5/3.5035) = 0.14369...
	if math.Abs(float64(q.shift[0])-math.Atanh(0.5/3.5035)) > 1e-7 {
		t.Fatalf("shift %v", q.shift[0])
	}
}

func TestAllIDsRoundTrip(t *testing.T) {
	q := Default()
	code := make([]float32, q.Dim())
	ids := make([]uint32, 1)
	for id := 0; id < q.CodebookSize(); id++ {
		if err := q.Code(code, uint32(id)); err != nil {
			t.Fatal(err)
		}
		if err := q.CodesToIndices(ids, code); err != nil {
			t.Fatal(err)
		}
		if ids[0] != uint32(id) {
			t.Fatalf("id %d -> %v -> %d", id, code, ids[0])
		}
	}
}

func TestKnownCodes(t *testing.T) {
	q := Default()
	code := make([]float32, 6)
	cases := []struct {
		id   uint32
		want []float32
	}{
		{0, []float32{-1, -1, -1, -1, -1, -1}},
		{63999, []float32{0.75, 0.75, 0.75, 1, 1, 1}},
		{1, []float32{-0.75, -1, -1, -1, -1, -1}},
		{8, []float32{-1, -0.75, -1, -1, -1, -1}},
		{12800, []float32{-1, -1, -1, -1, -1, -0.5}},
		// 4 + 4·8 + 4·64 + 2·512 + 2·2560 + 2·12800 = the all-zero code.
		{4 + 32 + 256 + 1024 + 5120 + 25600, []float32{0, 0, 0, 0, 0, 0}},
	}
	for _, c := range cases {
		if err := q.Code(code, c.id); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(code, c.want) {
			t.Errorf("Code(%d) = %v, want %v", c.id, code, c.want)
		}
	}
	if err := q.Code(code, 64000); !errors.Is(err, ErrIndex) {
		t.Errorf("Code(64000) err = %v, want ErrIndex", err)
	}
}

// Known inputs, worked by hand from the official formula:
// bounded = tanh(z + shift)·half_l − offset; code = round_half_even(bounded)/(L//2).
func TestKnownQuantize(t *testing.T) {
	q := Default()
	z := []float32{
		0, 0, 0, 0, 0, 0, // L=8: tanh(shift)·3.5035 − 0.5 = 0 -> 0; L=5: 0 -> 0
		10, -10, 10, 10, -10, 0.3, // saturate: 3.5035−0.5=3.0035 -> 3 -> .75; −4.0035 -> −4 -> −1; L=5: ±2.002 -> ±2 -> ±1; tanh(.3)·2.002=.5838 -> 1 -> .5
		0.2, -0.2, 1, 0.25, -0.25, -0.3,
	}
	want := []float32{
		0, 0, 0, 0, 0, 0,
		0.75, -1, 0.75, 1, -1, 0.5,
		// tanh(0.2+0.14369)·3.5035−0.5 = 0.6599 -> 1 -> .25
		// tanh(−0.2+0.14369)·3.5035−0.5 = −0.6971 -> −1 -> −.25
		// tanh(1.14369)·3.5035−0.5 = 2.3406 -> 2 -> .5
		// tanh(.25)·2.002 = 0.4900 -> 0; tanh(−.25) -> 0; tanh(−.3)·2.002 = −.5838 -> −1 -> −.5
		0.25, -0.25, 0.5, 0, 0, -0.5,
	}
	got := make([]float32, len(z))
	q.Quantize(got, z)
	if !slices.Equal(got, want) {
		t.Fatalf("Quantize\n got %v\nwant %v", got, want)
	}
	ids := make([]uint32, 3)
	q.Encode(ids, z)
	ids2 := make([]uint32, 3)
	if err := q.CodesToIndices(ids2, got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, ids2) {
		t.Fatalf("Encode %v != CodesToIndices(Quantize) %v", ids, ids2)
	}
	if ids[0] != 4+32+256+1024+5120+25600 {
		t.Fatalf("zero vector id %d", ids[0])
	}
}

func TestEncodeMatchesQuantizeRandom(t *testing.T) {
	q := Default()
	r := rand.New(rand.NewPCG(3, 4))
	z := make([]float32, 6*4096)
	for i := range z {
		z[i] = float32(r.NormFloat64() * 2)
	}
	codes := make([]float32, len(z))
	q.Quantize(codes, z)
	ids := make([]uint32, len(z)/6)
	ids2 := make([]uint32, len(ids))
	q.Encode(ids, z)
	if err := q.CodesToIndices(ids2, codes); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, ids2) {
		t.Fatal("Encode and Quantize+CodesToIndices disagree")
	}
	back := make([]float32, len(z))
	if err := q.IndicesToCodes(back, ids); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back, codes) {
		t.Fatal("IndicesToCodes(Encode(z)) != Quantize(z)")
	}
}

func TestBadLevelsAndCodes(t *testing.T) {
	for _, lv := range [][]int{nil, {1, 8}, {8, 0}, {1 << 13, 1 << 13}} {
		if _, err := New(lv); !errors.Is(err, ErrLevels) {
			t.Errorf("New(%v) err = %v, want ErrLevels", lv, err)
		}
	}
	q := Default()
	ids := make([]uint32, 1)
	if err := q.CodesToIndices(ids, []float32{0.1, 0, 0, 0, 0, 0}); !errors.Is(err, ErrIndex) {
		t.Errorf("off-grid code err = %v", err)
	}
	if err := q.CodesToIndices(ids, []float32{0, 0, 0, 0, 0, 1.5}); !errors.Is(err, ErrIndex) {
		t.Errorf("out-of-range code err = %v", err)
	}
	if err := q.IndicesToCodes(make([]float32, 12), []uint32{1, 64000}); !errors.Is(err, ErrIndex) {
		t.Errorf("IndicesToCodes err = %v", err)
	}
}

func TestOddLevels(t *testing.T) {
	q, err := New([]int{3, 4, 7})
	if err != nil {
		t.Fatal(err)
	}
	code := make([]float32, 3)
	ids := make([]uint32, 1)
	for id := 0; id < q.CodebookSize(); id++ {
		_ = q.Code(code, uint32(id))
		if err := q.CodesToIndices(ids, code); err != nil || ids[0] != uint32(id) {
			t.Fatalf("id %d round trip: %d, %v", id, ids[0], err)
		}
	}
}

func BenchmarkEncode256(b *testing.B) {
	q := Default()
	r := rand.New(rand.NewPCG(1, 1))
	z := make([]float32, 256*6)
	for i := range z {
		z[i] = float32(r.NormFloat64())
	}
	ids := make([]uint32, 256)
	b.ReportAllocs()
	for b.Loop() {
		q.Encode(ids, z)
	}
}

// TestTieDistance: 0.5 at the centre of a level, about 0 where a bounded value sits on a
// rounding boundary.
func TestTieDistance(t *testing.T) {
	q := Default()
	z := make([]float32, q.Dim())
	if d := q.TieDistance(z); math.Abs(d-0.5) > 1e-6 {
		t.Errorf("zero latents: %v, want 0.5", d)
	}
	// Dimension 0 (L = 8): bounded = tanh(z + shift)·half_l − 0.5 = 0.5 at z = atanh(1/half_l) − shift.
	z[0] = float32(math.Atanh(1/float64(q.halfL[0])) - float64(q.shift[0]))
	if d := q.TieDistance(z); d > 1e-6 {
		t.Errorf("latent on a boundary: %v, want about 0", d)
	}
}
