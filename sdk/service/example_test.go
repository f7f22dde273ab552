package service_test

import (
	"fmt"
	"log"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/service"
	"github.com/vmihailenco/msgpack/v5"
)

// A Go server serves the wasm modules' protocol over an executor it loaded itself: here the Go
// engine with its fast kernels; a native.Backend (ONNX Runtime) is added the same way, and
// Options.Load makes "open" requests build one.
func ExampleService_Add() {
	x, err := models.LoadDefault(engine.DefaultOptions())
	if err != nil {
		log.Fatal(err)
	}
	defer x.Close() // the caller owns what it adds
	svc := service.New(service.Options{})
	h, err := svc.Add(x)
	if err != nil {
		log.Fatal(err)
	}
	req, _ := msgpack.Marshal(map[string]any{"op": "info", "handle": h})
	var resp struct {
		OK    bool `msgpack:"ok"`
		Model struct {
			Name      string `msgpack:"name"`
			MaxTokens int    `msgpack:"max_tokens"`
		} `msgpack:"model"`
		Height int `msgpack:"height"`
		Width  int `msgpack:"width"`
	}
	if err := msgpack.Unmarshal(svc.Handle(req), &resp); err != nil {
		log.Fatal(err)
	}
	fmt.Println(h, resp.OK, resp.Model.Name, resp.Model.MaxTokens, resp.Height, resp.Width)
	// Output:
	// 1 true flextok-sdk-shapes32 32 32 32
}
