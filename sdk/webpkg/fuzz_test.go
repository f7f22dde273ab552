package webpkg

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse: no input panics or hangs; every error is an *Error; every accepted manifest
// marshals and parses back to the same bytes.
func FuzzParse(f *testing.F) {
	for _, fp16 := range []bool{false, true} {
		m, _ := testPackage(f, fp16)
		b, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte(`{"format":"flextok-web","version":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || (!errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported)) {
				t.Fatalf("error is not a webpkg *Error: %T %v", err, err)
			}
			return
		}
		b, err := m.Marshal()
		if err != nil {
			t.Fatalf("accepted manifest does not marshal: %v", err)
		}
		m2, err := Parse(b)
		if err != nil {
			t.Fatalf("marshalled manifest does not parse: %v\n%s", err, b)
		}
		b2, err := m2.Marshal()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("not canonical:\n%s\n%s", b, b2)
		}
		_ = m.Identity()
		_ = m.Hints()
	})
}
