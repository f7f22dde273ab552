package payload

import (
	"strconv"
	"testing"
)

// BenchmarkPayload measures the canonical encoding into a reused buffer and the strict
// decoding into a reused value, for 1, 32 and 256 tokens.
func BenchmarkPayload(b *testing.B) {
	for _, n := range []int{1, 32, 256} {
		p := testPayload(n)
		data, err := p.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		b.Run("op=encode/tokens="+strconv.Itoa(n), func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := p.AppendBinary(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("op=decode/tokens="+strconv.Itoa(n), func(b *testing.B) {
			var q Payload
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := Unmarshal(data, &q); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("op=decode-fresh/tokens="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var q Payload
				if err := Unmarshal(data, &q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
