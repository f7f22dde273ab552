package tensor

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strings"
	"testing"
)

func TestNewAndCheck(t *testing.T) {
	x, err := New(2, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != 24 || x.Check() != nil {
		t.Fatalf("New(2,3,4): len %d, check %v", x.Len(), x.Check())
	}
	if s, err := New(); err != nil || s.Len() != 1 {
		t.Fatalf("scalar: len %d, err %v", s.Len(), err)
	}
	if _, err := New(2, -1); err == nil || !strings.HasPrefix(err.Error(), "flextok/tensor: ") {
		t.Fatalf("negative dim: err %v", err)
	}
	if _, err := New(1<<20, 1<<20); err == nil {
		t.Fatal("huge shape: no error")
	}
	if _, err := New(0, 1<<40, 1<<40); err != nil {
		t.Fatalf("zero-sized shape: %v", err)
	}
	if _, err := FromData(make([]float32, 5), 2, 3); err == nil ||
		err.Error() != "flextok/tensor: shape [2 3] needs 6 values, got 5" {
		t.Fatalf("FromData mismatch: %v", err)
	}
	shape := []int{1, 2}
	y, err := FromData([]float32{1, 2}, shape...)
	if err != nil {
		t.Fatal(err)
	}
	shape[0] = 9
	if y.Shape[0] != 1 {
		t.Fatal("FromData did not copy the shape")
	}
	c := y.Clone()
	c.Data[0] = 7
	if y.Data[0] != 1 || !SameShape(c, y) {
		t.Fatal("Clone is not deep or changed the shape")
	}
	if SameShape(x, y) {
		t.Fatal("SameShape([2 3 4], [1 2]) = true")
	}
}

func TestCompare(t *testing.T) {
	a := []float32{1, 2, 3, 4}
	b := []float32{1, 2.5, 3, 3}
	if d := MaxAbsDiff(a, b); d != 1 {
		t.Fatalf("MaxAbsDiff = %v, want 1", d)
	}
	if d := MaxAbsDiff(a, b[:3]); !math.IsInf(d, 1) {
		t.Fatalf("MaxAbsDiff of different lengths = %v", d)
	}
	nan := float32(math.NaN())
	if d := MaxAbsDiff([]float32{nan}, []float32{0}); d == d {
		t.Fatalf("MaxAbsDiff with NaN = %v", d)
	}
	// sum (a-b)^2 = 0.25 + 1 = 1.25; sum b^2 = 1 + 6.25 + 9 + 9 = 25.25.
	if e := NMSE(a, b); math.Abs(e-1.25/25.25) > 1e-15 {
		t.Fatalf("NMSE = %v", e)
	}
	if e := RelErr(a, b); math.Abs(e-math.Sqrt(1.25/25.25)) > 1e-15 {
		t.Fatalf("RelErr = %v", e)
	}
	z := []float32{0, 0}
	if NMSE(z, z) != 0 || !math.IsInf(NMSE(a[:2], z), 1) || !math.IsInf(RelErr(a, z), 1) {
		t.Fatal("zero reference special cases")
	}
	if e := NMSE([]float32{nan}, []float32{1}); e == e {
		t.Fatalf("NMSE with NaN = %v", e)
	}
}

func TestSHA256(t *testing.T) {
	data := make([]float32, 3000) // crosses the 1024-value buffer boundary
	for i := range data {
		data[i] = float32(i) - 0.5
	}
	sum := sha256.Sum256(Bytes(data))
	if got, want := SHA256(data), hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("SHA256 = %s, want %s", got, want)
	}
	// 1.0 is 0x3f800000, stored little endian as 00 00 80 3f.
	if b := Bytes([]float32{1}); string(b) != "\x00\x00\x80\x3f" {
		t.Fatalf("Bytes(1) = % x", b)
	}
	if got := SHA256(nil); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("SHA256(nil) = %s", got)
	}
	// -0 and +0 hash differently.
	if SHA256([]float32{0}) == SHA256([]float32{float32(math.Copysign(0, -1))}) {
		t.Fatal("SHA256 does not see the sign of zero")
	}
}

func TestStackUnstack(t *testing.T) {
	a, _ := FromData([]float32{1, 2, 3, 4}, 2, 2)
	b, _ := FromData([]float32{5, 6, 7, 8}, 2, 2)
	s, err := Stack([]Tensor{a, b})
	if err != nil || len(s.Shape) != 3 || s.Shape[0] != 2 || s.Data[4] != 5 {
		t.Fatalf("Stack: %v %v", s, err)
	}
	u := Unstack(s)
	if len(u) != 2 || !SameShape(u[1], b) || u[1].Data[3] != 8 {
		t.Fatalf("Unstack: %v", u)
	}
	c, _ := FromData([]float32{1, 2}, 2)
	if _, err := Stack([]Tensor{a, c}); err == nil {
		t.Error("Stack of differing shapes: no error")
	}
	if _, err := Stack(nil); err == nil {
		t.Error("Stack of nothing: no error")
	}
}
