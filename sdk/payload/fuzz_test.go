package payload

import (
	"bytes"
	"testing"
)

func seedCorpus(f *testing.F) {
	for _, p := range []*Payload{testPayload(1), testPayload(256), fullPayload()} {
		b, err := p.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
		s, err := Split(p, []int{1, 2, 4})
		if err != nil {
			f.Fatal(err)
		}
		sb, err := s.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sb)
	}
	f.Add([]byte{})
	f.Add([]byte{0x80})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
}

// FuzzDecode: no input panics or hangs; every accepted payload re-encodes canonically, and the
// canonical bytes decode to the same canonical bytes.
func FuzzDecode(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Payload
		if err := Unmarshal(data, &p); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is not a *payload.Error: %T %v", err, err)
			}
			return
		}
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted payload does not re-encode: %v", err)
		}
		var q Payload
		if err := Unmarshal(b, &q); err != nil {
			t.Fatalf("canonical bytes do not decode: %v", err)
		}
		b2, err := q.MarshalBinary()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("canonical encoding is not stable: %v", err)
		}
		if _, err := p.JSON(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzDecodeStream: no input panics or hangs; an accepted stream re-encodes to bytes that decode
// to the same stream, and a done stream joins into a valid payload.
func FuzzDecodeStream(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeStream(data, Options{})
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is not a *payload.Error: %T %v", err, err)
			}
			return
		}
		b, err := s.AppendBinary(nil)
		if err != nil {
			t.Fatalf("accepted stream does not re-encode: %v", err)
		}
		s2, err := DecodeStream(b, Options{})
		if err != nil {
			t.Fatalf("canonical stream does not decode: %v", err)
		}
		b2, _ := s2.AppendBinary(nil)
		if !bytes.Equal(b, b2) {
			t.Fatal("canonical stream encoding is not stable")
		}
		if s.Len() > 0 && (s.Header.NumFrames() == 1 || s.Done()) {
			p, err := s.Payload()
			if err != nil {
				t.Fatalf("stream with ids gives no payload: %v", err)
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("joined payload invalid: %v", err)
			}
		}
		if _, err := s.JSON(); err != nil {
			t.Fatal(err)
		}
	})
}
