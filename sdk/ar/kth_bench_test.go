package ar

import (
	"fmt"
	"testing"
)

// BenchmarkTopK compares the two k-th-largest searches on a vocabulary-sized row, side by side.
func BenchmarkTopK(b *testing.B) {
	r := newRNG(1, 0)
	v := make([]float32, 64000)
	for i := range v {
		v[i] = float32(r.uniform()*20 - 10)
	}
	for _, k := range []int{100, 1000} {
		b.Run(fmt.Sprintf("heap/k=%d", k), func(b *testing.B) {
			var s sampleBuf
			for b.Loop() {
				s.kthLargestHeap(v, k)
			}
		})
		b.Run(fmt.Sprintf("quickselect/k=%d", k), func(b *testing.B) {
			var s sampleBuf
			for b.Loop() {
				s.sel = append(s.sel[:0], v...)
				kthLargestInPlace(s.sel, k)
			}
		})
	}
}
