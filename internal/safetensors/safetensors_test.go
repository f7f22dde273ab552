package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReferenceBytes checks the Writer against the byte layout of the
// reference implementation's own serialization test (tensor.rs).
func TestReferenceBytes(t *testing.T) {
	var w Writer
	if err := w.AddFloat32("attn.0", F32, []int{1, 2, 3}, []float32{0, 1, 2, 3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	want := []byte{64, 0, 0, 0, 0, 0, 0, 0}
	want = append(want, `{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`...)
	want = append(want, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64)
	if got := w.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	var e Writer
	if got := e.Bytes(); !bytes.Equal(got, []byte("\x08\x00\x00\x00\x00\x00\x00\x00{}      ")) {
		t.Fatalf("empty: %q", got)
	}
	e.SetMetadata("framework", "pt")
	want = append([]byte{40, 0, 0, 0, 0, 0, 0, 0}, `{"__metadata__":{"framework":"pt"}}     `...)
	if got := e.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("metadata: %q", got)
	}
}

func TestRoundTrip(t *testing.T) {
	var w Writer
	vals := []float32{0, 1, -2.5, 65504, 1e-8, float32(math.Inf(-1)), 3.14159}
	must(t, w.AddFloat32("b.f32", F32, []int{7}, vals))
	must(t, w.AddFloat32("a.f16", F16, []int{7, 1}, vals))
	must(t, w.AddFloat32("c.bf16", BF16, []int{1, 7}, vals))
	must(t, w.AddInt64("ids", I64, []int{2, 2}, []int64{0, 63999, -1, 1 << 40}))
	must(t, w.AddInt64("ids32", I32, []int{3}, []int64{1, -2, 3}))
	must(t, w.AddFloat32("scalar", F32, []int{}, []float32{42}))
	must(t, w.AddFloat32("empty", F16, []int{0, 3}, nil))
	must(t, w.SetMetadata("vae", "{'a': 1}"))
	must(t, w.SetMetadata("_target_", "flextok.flextok_wrapper.FlexTok"))
	data := w.Bytes()
	if len(w.Header())%8 != 0 {
		t.Fatal("header not padded")
	}
	// Order: I64, F32, I32, BF16, F16 (alignment descending), then name.
	f, err := OpenBytes(data)
	must(t, err)
	wantOrder := []string{"ids", "b.f32", "scalar", "ids32", "c.bf16", "a.f16", "empty"}
	if got := f.Names(); strings.Join(got, ",") != strings.Join(wantOrder, ",") {
		t.Fatalf("order %v, want %v", got, wantOrder)
	}
	if v, _ := f.MetadataValue("_target_"); v != "flextok.flextok_wrapper.FlexTok" {
		t.Fatalf("metadata %q", v)
	}
	if m := f.Metadata(); len(m) != 2 || m[0].Key != "vae" {
		t.Fatalf("metadata order %v", m)
	}
	got, err := f.ReadFloat32("b.f32")
	must(t, err)
	for i := range vals {
		if got[i] != vals[i] {
			t.Fatalf("f32[%d] = %v", i, got[i])
		}
	}
	h, err := f.ReadFloat32("a.f16")
	must(t, err)
	wantH := []float32{0, 1, -2.5, 65504, 0, float32(math.Inf(-1)), 3.140625}
	for i := range wantH {
		if h[i] != wantH[i] {
			t.Fatalf("f16[%d] = %v want %v", i, h[i], wantH[i])
		}
	}
	bf, err := f.ReadFloat32("c.bf16")
	must(t, err)
	if bf[2] != -2.5 || bf[4] != BF16ToFloat32(Float32ToBF16(1e-8)) || bf[6] != 3.140625 {
		t.Fatalf("bf16 %v", bf)
	}
	ids, err := f.ReadInt64("ids")
	must(t, err)
	if ids[1] != 63999 || ids[2] != -1 || ids[3] != 1<<40 {
		t.Fatalf("ids %v", ids)
	}
	ids32, err := f.ReadInt64("ids32")
	must(t, err)
	if ids32[1] != -2 {
		t.Fatalf("ids32 %v", ids32)
	}
	if s, err := f.ReadFloat32("scalar"); err != nil || len(s) != 1 || s[0] != 42 {
		t.Fatalf("scalar %v %v", s, err)
	}
	if e, err := f.ReadFloat32("empty"); err != nil || len(e) != 0 {
		t.Fatalf("empty %v %v", e, err)
	}
	if _, err := f.ReadFloat32("ids"); !errors.Is(err, ErrConvert) {
		t.Fatalf("ids as float: %v", err)
	}
	if _, err := f.ReadFloat32("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if err := f.ReadFloat32Into("b.f32", make([]float32, 3)); !errors.Is(err, ErrSize) {
		t.Fatalf("size: %v", err)
	}

	// Same through a real file.
	path := filepath.Join(t.TempDir(), "m.safetensors")
	must(t, os.WriteFile(path, data, 0o644))
	ff, err := OpenFile(path)
	must(t, err)
	defer ff.Close()
	if ff.Len() != 7 {
		t.Fatal(ff.Len())
	}
}

// TestChunkedRead reads a tensor larger than the conversion chunk.
func TestChunkedRead(t *testing.T) {
	n := chunkBytes/2 + 123
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(i % 2048)
	}
	for _, dt := range []DType{F32, F16, BF16} {
		var w Writer
		must(t, w.AddFloat32("x", dt, []int{n}, vals))
		f, err := OpenBytes(w.Bytes())
		must(t, err)
		got, err := f.ReadFloat32("x")
		must(t, err)
		for i := range vals {
			want := vals[i]
			if dt == BF16 {
				want = BF16ToFloat32(Float32ToBF16(want))
			}
			if got[i] != want {
				t.Fatalf("%s [%d] = %v want %v", dt, i, got[i], want)
			}
		}
	}
}

func TestF16Exhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToFloat32(uint16(h))
		exp := (h >> 10) & 0x1f
		mant := h & 0x3ff
		var want float64
		switch {
		case exp == 0:
			want = float64(mant) * math.Pow(2, -24)
		case exp == 31 && mant == 0:
			want = math.Inf(1)
		case exp == 31:
			if !math.IsNaN(float64(f)) {
				t.Fatalf("%#x not NaN", h)
			}
			continue
		default:
			want = (1 + float64(mant)/1024) * math.Pow(2, float64(exp-15))
		}
		if h&0x8000 != 0 {
			want = -want
		}
		if float64(f) != want || math.Signbit(float64(f)) != (h&0x8000 != 0) {
			t.Fatalf("F16ToFloat32(%#x) = %v want %v", h, f, want)
		}
		if back := Float32ToF16(f); back != uint16(h) {
			t.Fatalf("Float32ToF16(%v) = %#x want %#x", f, back, h)
		}
	}
	cases := []struct {
		in   float32
		want uint16
	}{
		{1 + 1.0/2048, 0x3c00},                       // tie -> even
		{1 + 3.0/2048, 0x3c02},                       // tie -> even (up)
		{65520, 0x7c00},                              // rounds to inf
		{65519, 0x7bff},                              //
		{float32(math.Pow(2, -25)), 0},               // tie at the smallest subnormal -> 0
		{float32(math.Pow(2, -25)) * 1.01, 1},        //
		{float32(math.Pow(2, -24)) * 1.5, 2},         // tie -> even
		{float32(math.NaN()), 0x7e00},                //
		{float32(math.Pow(2, -14)) * 0.9999, 0x0400}, // subnormal rounding up to the smallest normal
	}
	for _, c := range cases {
		if got := Float32ToF16(c.in); got != c.want {
			t.Errorf("Float32ToF16(%g) = %#x want %#x", c.in, got, c.want)
		}
	}
	if Float32ToBF16(1+1.0/256) != 0x3f80 || Float32ToBF16(1+3.0/256) != 0x3f82 {
		t.Error("bf16 ties")
	}
	if Float32ToBF16(float32(math.NaN())) != 0x7fc0 {
		t.Error("bf16 nan")
	}
}

// header builds a file from a raw header and a data section.
func header(h string, data int) []byte {
	b := make([]byte, 8, 8+len(h)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(h)))
	b = append(b, h...)
	return append(b, make([]byte, data)...)
}

func TestValidation(t *testing.T) {
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, MaxHeaderSize+1)
	past := make([]byte, 16)
	binary.LittleEndian.PutUint64(past, 100)
	cases := []struct {
		name string
		file []byte
		want error
		text string
	}{
		{"short", []byte{1, 2, 3}, ErrTruncated, ""},
		{"huge header", huge, ErrHeaderTooLarge, ""},
		{"header past EOF", past, ErrTruncated, "past the end"},
		{"bad json", header(`{"a":`, 0), ErrHeader, ""},
		{"not object", header(`[1]`, 0), ErrHeader, ""},
		{"trailing", header(`{} x`, 0), ErrHeader, "trailing"},
		{"bad utf8", header("{\"\xff\":1}", 0), ErrHeader, "UTF-8"},
		{"unknown dtype", header(`{"w":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}`, 4), ErrDType, `"w"`},
		{"missing field", header(`{"w":{"dtype":"F32","shape":[1]}}`, 4), ErrHeader, `"w"`},
		{"negative dim", header(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), ErrShape, `"w"`},
		{"float dim", header(`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, 4), ErrShape, `"w"`},
		{"overflow", header(`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4), ErrShape, `"w"`},
		{"overflow dtype", header(`{"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}}`, 4), ErrShape, `"w"`},
		{"size mismatch", header(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), ErrOffsets, `"w"`},
		{"past data", header(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), ErrOffsets, `"w"`},
		{"end before begin", header(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4), ErrOffsets, `"w"`},
		{"overlap", header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), ErrOffsets, `"b"`},
		{"gap", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), ErrOffsets, "gap"},
		{"unused tail", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), ErrOffsets, "cover"},
		{"three offsets", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 4), ErrOffsets, `"a"`},
		{"duplicate tensor", header(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), ErrDuplicate, `"a"`},
		{"duplicate field", header(`{"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}`, 4), ErrDuplicate, `"a"`},
		{"duplicate meta", header(`{"__metadata__":{"k":"1","k":"2"}}`, 0), ErrDuplicate, `"k"`},
		{"meta not string", header(`{"__metadata__":{"k":1}}`, 0), ErrHeader, `"k"`},
	}
	for _, c := range cases {
		_, err := OpenBytes(c.file)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.text) || !strings.HasPrefix(err.Error(), "flextok/safetensors: ") {
			t.Errorf("%s: message %q lacks %q", c.name, err, c.text)
		}
	}
	// Accepted: unknown fields, null metadata, any key order, padding.
	ok := header(`{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8],"extra":{"x":[1]}},"__metadata__":null,"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}   `, 8)
	f, err := OpenBytes(ok)
	if err != nil {
		t.Fatal(err)
	}
	if n := f.Names(); n[0] != "b" || n[1] != "a" {
		t.Fatalf("key order %v", n)
	}
}

func TestWriterErrors(t *testing.T) {
	var w Writer
	must(t, w.AddFloat32("a", F32, []int{1}, []float32{1}))
	if err := w.AddFloat32("a", F32, []int{1}, []float32{1}); !errors.Is(err, ErrDuplicate) {
		t.Error(err)
	}
	if err := w.AddFloat32("b", F32, []int{2}, []float32{1}); !errors.Is(err, ErrSize) {
		t.Error(err)
	}
	if err := w.AddFloat32("c", I64, []int{1}, []float32{1}); !errors.Is(err, ErrConvert) {
		t.Error(err)
	}
	if err := w.AddInt64("d", I32, []int{1}, []int64{1 << 40}); !errors.Is(err, ErrConvert) {
		t.Error(err)
	}
	if err := w.AddFloat32(MetadataKey, F32, []int{1}, []float32{1}); !errors.Is(err, ErrHeader) {
		t.Error(err)
	}
	if err := w.AddRaw("e", BOOL, []int{3}, []byte{1, 0, 1}); err != nil {
		t.Error(err)
	}
	must(t, w.SetMetadata("k\n\"q\"\x01é", "v"))
	f, err := OpenBytes(w.Bytes())
	must(t, err)
	if v, ok := f.MetadataValue("k\n\"q\"\x01é"); !ok || v != "v" {
		t.Error("escaped metadata key lost")
	}
	if !bytes.Contains(w.Header(), []byte(`"k\n\"q\"\u0001é"`)) {
		t.Errorf("escaping: %s", w.Header())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func FuzzOpen(f *testing.F) {
	var w Writer
	w.AddFloat32("a", F16, []int{2, 2}, []float32{1, 2, 3, 4})
	w.AddInt64("b", I64, []int{1}, []int64{7})
	w.SetMetadata("cfg", "{'x': [1, 2]}")
	f.Add(w.Bytes())
	f.Add(header(`{}`, 0))
	f.Add(header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8))
	f.Add(header(`{"w":{"dtype":"BF16","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4))
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := OpenBytes(data)
		if err != nil {
			return
		}
		for _, ti := range file.Tensors() {
			if ti.DType.IsFloat() && ti.NumElements() < 1<<20 {
				if _, err := file.ReadFloat32(ti.Name); err != nil {
					t.Fatalf("valid file, read %q: %v", ti.Name, err)
				}
			}
			if ti.DType.IsInt() && ti.NumElements() < 1<<20 {
				if _, err := file.ReadInt64(ti.Name); err != nil {
					t.Fatalf("valid file, read %q: %v", ti.Name, err)
				}
			}
		}
	})
}
