package safetensors

import (
	"crypto/sha256"
	"testing"
)

// Digests gives the SHA-256 of the whole file and of every tensor's bytes, for tensors smaller
// and larger than the read buffer.
func TestDigests(t *testing.T) {
	var w Writer
	sizes := map[string]int{"small": 3, "medium": 100 << 10, "large": 3<<20 + 5, "empty": 0}
	for name, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + len(name))
		}
		if err := w.AddRaw(name, U8, []int{n}, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.SetMetadata("k", "v"); err != nil {
		t.Fatal(err)
	}
	data := w.Bytes()
	f, err := OpenBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	file, tensors, err := f.Digests()
	if err != nil {
		t.Fatal(err)
	}
	if file != sha256.Sum256(data) {
		t.Error("file digest differs from the SHA-256 of the bytes")
	}
	for i, ti := range f.Tensors() {
		raw, err := f.ReadRaw(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if tensors[i] != sha256.Sum256(raw) {
			t.Errorf("%s: tensor digest differs", ti.Name)
		}
	}
	if _, _, err := func() ([32]byte, [][32]byte, error) {
		g, _ := OpenBytes(data)
		g.r = shortReader{data[:len(data)-1]}
		return g.Digests()
	}(); err == nil {
		t.Error("a short read gave no error")
	}
}

type shortReader struct{ b []byte }

func (s shortReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(s.b)) {
		return 0, errShort
	}
	n := copy(p, s.b[off:])
	if n < len(p) {
		return n, errShort
	}
	return n, nil
}

var errShort = ErrTruncated // any error will do
