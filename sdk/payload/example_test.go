package payload_test

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/flextok-sdk/flextok/sdk/payload"
)

func Example() {
	model := payload.Model{
		Name:      "flextok_d18_d28_in1k",
		Digest:    sha256.Sum256([]byte("the weights file")),
		Levels:    []int{8, 8, 8, 5, 5, 5},
		MaxTokens: 256,
	}
	p := payload.Payload{
		Model: model,
		Image: payload.Image{Height: 256, Width: 256, Resize: "catmull-rom", Crop: "center"},
		IDs:   []uint32{4021, 377, 63999, 12},
	}
	b, err := p.MarshalBinary()
	if err != nil {
		panic(err)
	}
	fmt.Println(len(b), "bytes")

	var q payload.Payload
	err = payload.Decode(b, &q, payload.Options{Expect: &model})
	fmt.Println(q.IDs, err)

	// A decoder given another model refuses the tokens.
	other := model
	other.Name = "flextok_d12_d12_in1k"
	other.Digest[0] ^= 1 // the digest decides; the name is descriptive
	err = payload.Decode(b, &q, payload.Options{Expect: &other})
	fmt.Println(errors.Is(err, payload.ErrModelMismatch), payload.Code(err))
	// Output:
	// 211 bytes
	// [4021 377 63999 12] <nil>
	// true model_mismatch
}

func ExampleSplit() {
	p := payload.Payload{
		Model: payload.Model{Name: "m", Levels: []int{8, 8, 8, 5, 5, 5}, MaxTokens: 256},
		Image: payload.Image{Height: 256, Width: 256},
		IDs:   []uint32{1, 2, 3, 4, 5, 6, 7, 8},
	}
	s, _ := payload.Split(&p, []int{1, 1, 2})
	// A browser receives the chunks one by one and decodes the prefix after each.
	recv := &payload.Stream{Header: s.Header}
	for _, c := range s.Chunks {
		if err := recv.Add(c); err != nil {
			panic(err)
		}
		prefix, _ := recv.Payload()
		fmt.Println(prefix.IDs, recv.Done())
	}
	// Output:
	// [1] false
	// [1 2] false
	// [1 2 3 4] false
	// [1 2 3 4 5 6 7 8] true
}
