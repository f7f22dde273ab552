package engine

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/flextok-sdk/flextok/sdk/flow"
	"github.com/flextok-sdk/flextok/sdk/tensor"
)

// TestCheckTokens: the Bind rules both executors share, with the messages they always had.
func TestCheckTokens(t *testing.T) {
	const R, n = 4, 10
	for _, tc := range []struct {
		ids  [][]uint32
		k    []int
		want string // error text, "" for none
		keep []int
	}{
		{nil, nil, "no token sequences", nil},
		{[][]uint32{{1}}, []int{1, 2}, "2 prefix lengths for 1 token sequences", nil},
		{[][]uint32{{1, 2, 3, 4, 5}}, nil, "image 0 has 5 tokens, more than the 4 registers", nil},
		{[][]uint32{{1}, {2, 10}}, nil, "image 1 token 1: id 10 is outside the codebook [0, 10)", nil},
		{[][]uint32{{}}, nil, "image 0: prefix length k = 0 outside [1, 4]", nil},
		{[][]uint32{{1}}, []int{5}, "image 0: prefix length k = 5 outside [1, 4]", nil},
		{[][]uint32{{1, 2}, {9}}, nil, "", []int{2, 1}},
		{[][]uint32{{1, 2}, {9}}, []int{4, 1}, "", []int{4, 1}}, // padding visible, as the official decoder
	} {
		keep, err := CheckTokens(tc.ids, tc.k, R, n)
		if tc.want == "" && (err != nil || !slices.Equal(keep, tc.keep)) {
			t.Errorf("CheckTokens(%v, %v) = %v, %v, want %v", tc.ids, tc.k, keep, err, tc.keep)
		}
		if tc.want != "" && (err == nil || err.Error() != tc.want) {
			t.Errorf("CheckTokens(%v, %v): %v, want %q", tc.ids, tc.k, err, tc.want)
		}
	}
}

// TestCheckItem: the Velocity item rules both executors share.
func TestCheckItem(t *testing.T) {
	x := tensor.Tensor{Shape: []int{4, 2, 3}, Data: make([]float32, 24)}
	for _, tc := range []struct {
		it   flow.Item
		want string
	}{
		{flow.Item{Image: 2, X: x}, "image 2, but 2 token sequences are bound"},
		{flow.Item{Image: -1, X: x}, "image -1, but 2"},
		{flow.Item{X: tensor.Tensor{Shape: []int{3, 2, 4}, Data: make([]float32, 24)}}, "x_t shape [3 2 4] with 24 values, want [4, h, w]"},
		{flow.Item{X: tensor.Tensor{Shape: []int{4, 2, 3}, Data: make([]float32, 23)}}, "x_t shape"},
		{flow.Item{X: tensor.Tensor{Shape: []int{4, 0, 3}}}, "x_t shape"},
		{flow.Item{X: x, V: tensor.Tensor{Shape: []int{4, 3, 2}}}, "v shape [4 3 2] differs from x_t shape [4 2 3]"},
		{flow.Item{Image: 1, X: x, V: tensor.Tensor{Shape: []int{4, 2, 3}}}, ""},
		{flow.Item{X: x}, ""},
	} {
		h, w, err := CheckItem(&tc.it, 2, 4)
		if tc.want == "" && (err != nil || h != 2 || w != 3) {
			t.Errorf("CheckItem(%+v) = %d, %d, %v", tc.it.X.Shape, h, w, err)
		}
		if tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("CheckItem(image %d, x %v, v %v): %v, want %q", tc.it.Image, tc.it.X.Shape, tc.it.V.Shape, err, tc.want)
		}
	}
}

// TestExecutorClose: an Engine's Close does nothing and returns nil.
func TestExecutorClose(t *testing.T) {
	var x Executor = &Engine{}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
}

// CheckTime is the t-range check both executors' Velocity make.
func TestCheckTime(t *testing.T) {
	for _, ok := range []float32{0, 0.5, 1000} {
		if err := CheckTime(ok, 1000); err != nil {
			t.Errorf("t = %v: %v", ok, err)
		}
	}
	for _, bad := range []float32{-1e-7, 1000.5, float32(math.NaN())} {
		if err := CheckTime(bad, 1000); err == nil || !strings.Contains(err.Error(), "outside [0, 1000]") {
			t.Errorf("t = %v: %v", bad, err)
		}
	}
}
