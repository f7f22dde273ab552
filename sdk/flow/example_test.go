package flow_test

import (
	"context"
	"fmt"

	"github.com/flextok-sdk/flextok/sdk/flow"
)

// A toy velocity model whose flow ends at the constant latent 0.25 (conditional) or -1
// (unconditional): v = (x_t - target)/t. A real Denoiser runs the FlexTok decoder.
func toyModel(ctx context.Context, t float32, batch []flow.Item) error {
	for _, it := range batch {
		target := float32(0.25)
		if it.Uncond {
			target = -1
		}
		for j, x := range it.X.Data {
			it.V.Data[j] = (x - target) / t
		}
	}
	return nil
}

func ExampleSample() {
	opt := flow.Options{
		Steps:    4,
		Guidance: 2, // CFG: u + 2(c - u), so the flow ends at -1 + 2(0.25 + 1) = 1.5
		Shapes:   [][]int{{2, 2, 2}},
		Seed:     1,
		OnStep: func(s flow.Step) error {
			fmt.Printf("step %d  t=%.2f  preview[0]=%.4f\n", s.Index, s.T, s.X0[0].Data[0])
			return nil
		},
	}
	x, err := flow.Sample(context.Background(), flow.DenoiserFunc(toyModel), opt)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("x0 = %.4f\n", x[0].Data)
	// Output:
	// step 0  t=1.00  preview[0]=1.5000
	// step 1  t=0.75  preview[0]=1.5000
	// step 2  t=0.50  preview[0]=1.5000
	// step 3  t=0.25  preview[0]=1.5000
	// x0 = [1.5000 1.5000 1.5000 1.5000 1.5000 1.5000 1.5000 1.5000]
}

func ExampleNoise() {
	x, err := flow.Noise(0, 0, []int{1, 2, 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(x[0].Shape, x[0].Data)
	// Output:
	// [1 2 2] [-1.095655 0.6942085 -1.9561992 -0.7414258]
}

func ExampleOptions_Validate() {
	fmt.Println(flow.Options{Shapes: [][]int{{16, 32, 32}}}.Validate())
	// Output:
	// flextok/flow: steps must be >= 1, got 0
}
