// Command decodeonly uses the default tokenizer only, as the decode-only wasm module does:
// models_test.TestDefaultARNotLinked builds it and checks that the AR model's bytes are not in
// the binary.
package main

import (
	"fmt"

	"github.com/flextok-sdk/flextok/models"
)

func main() { fmt.Println(len(models.Default().Weights)) }
