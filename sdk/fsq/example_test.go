package fsq_test

import (
	"fmt"

	"github.com/flextok-sdk/flextok/sdk/fsq"
)

// FSQ with FlexTok's levels 8,8,8,5,5,5: a 6-dimensional vector is bounded, rounded to the
// grid, and read as one id in [0, 64000); the id gives the grid point back.
func ExampleQuantizer() {
	q := fsq.Default()
	z := []float32{0.3, -2.0, 5.1, 0.0, -0.4, 1.2}
	ids := make([]uint32, 1)
	q.Encode(ids, z)

	code := make([]float32, q.Dim())
	if err := q.Code(code, ids[0]); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(q.Levels(), q.CodebookSize())
	fmt.Println(ids[0], code)
	// Output:
	// [8 8 8 5 5 5] 64000
	// 55237 [0.25 -1 0.75 0 -0.5 1]
}
