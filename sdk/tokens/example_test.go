package tokens_test

import (
	"fmt"

	"github.com/flextok-sdk/flextok/sdk/tokens"
)

// Any prefix of a FlexTok sequence is a coarser description of the same image; ids are checked
// against the model's limits.
func ExampleSequence_Prefix() {
	s, err := tokens.New([]uint32{34861, 41390, 28398, 40998, 1203, 63999}, tokens.DefaultLimits)
	if err != nil {
		fmt.Println(err)
		return
	}
	coarse, _ := s.Prefix(2)
	fmt.Println(coarse.IDs(), coarse.Len())

	_, err = s.Prefix(7)
	fmt.Println(err)
	_, err = tokens.New([]uint32{64000}, tokens.DefaultLimits)
	fmt.Println(err)
	// Output:
	// [34861 41390] 2
	// flextok/tokens: invalid prefix length: k = 7, sequence has 6 tokens
	// flextok/tokens: id outside the codebook: id 64000 at position 0, codebook size 64000
}
