package service

import (
	"context"

	"github.com/flextok-sdk/flextok/sdk/engine"
	"github.com/flextok-sdk/flextok/sdk/payload"
	"github.com/flextok-sdk/flextok/sdk/webpkg"
)

// Codes of "open_graphs" and of the decodes of the models it opens.
const (
	// CodeBadPackage: a web model package manifest that does not parse, or of another format
	// or version (webpkg.Parse).
	CodeBadPackage = "bad_package"
	// CodeGraphMismatch: a graph that is not the manifest's model's (its bytes differ from the
	// manifest's SHA-256, or it answers with shapes of another model).
	CodeGraphMismatch = "graph_mismatch"
	// CodeOutOfMemory: the graph host ran out of memory creating a session or running one.
	CodeOutOfMemory = "out_of_memory"
	// CodeNoWebGPU: provider "webgpu" was asked for where no WebGPU adapter exists
	// (provider "auto" falls back to wasm instead, and says why).
	CodeNoWebGPU = "webgpu_unavailable"
)

// Providers and precisions an "open_graphs" request may ask for ("" is "auto").
const (
	ProviderAuto   = "auto"   // WebGPU when the host has an adapter, else wasm
	ProviderWasm   = "wasm"   // onnxruntime-web's wasm provider (SIMD, threads when isolated)
	ProviderWebGPU = "webgpu" // onnxruntime-web's WebGPU provider
	PrecisionAuto  = "auto"   // fp16 decoder on WebGPU when the package has one, else fp32
)

// GraphHost opens the networks of a web model package (docs/web-package.md) for
// "open_graphs": the front end runs them (the GOOS=js module: onnxruntime-web in the page's
// Worker), this package keeps payloads, the sampler and streams (engine.GraphExecutor).
// Errors that are *Error keep their code; others are classified as every error is
// (engine.ErrGraphMismatch: "graph_mismatch"), defaulting to "bad_model".
type GraphHost func(ctx context.Context, r GraphRequest) (*OpenedGraphs, error)

// GraphRequest is what a GraphHost opens.
type GraphRequest struct {
	Manifest     *webpkg.Manifest // parsed and validated
	ManifestJSON []byte           // its bytes, as the request carried them
	// Files is the key under which the front end holds the package's files (the bindings'
	// file store): the graph bytes never pass through the service.
	Files     string
	Provider  string // ProviderAuto, ProviderWasm or ProviderWebGPU
	Precision string // PrecisionAuto, webpkg.FP32 or webpkg.FP16 (the package has it)
}

// OpenedGraphs are the networks a GraphHost opened.
type OpenedGraphs struct {
	Graphs    engine.Graphs
	Close     func() error // releases the sessions (nil: nothing to release)
	Provider  string       // the provider that runs them: "wasm" or "webgpu"
	Precision string       // the decoder graph's: "fp32" or "fp16"
	// Fallback says why Provider is not the one asked for (e.g. "no WebGPU adapter"); "" when
	// it is.
	Fallback string
}

type openGraphsResponse struct {
	header
	Handle uint64 `msgpack:"handle"`
	modelInfo
	Provider  string `msgpack:"provider"`
	Precision string `msgpack:"precision"`
	Fallback  string `msgpack:"fallback"`
}

func (s *Service) openGraphs(ctx context.Context, h header, r *request) (any, error) {
	if s.o.Graphs == nil {
		return nil, errorf(CodeUnsupported, `this front end runs no graphs ("open_graphs" needs the GOOS=js module with the bindings' onnxruntime-web host)`)
	}
	switch {
	case len(r.Manifest) == 0:
		return nil, errorf(CodeBadRequest, `"open_graphs" needs "manifest" (the package's manifest.json)`)
	case r.Files == "":
		return nil, errorf(CodeBadRequest, `"open_graphs" needs "files" (the key of the package's files)`)
	case len(r.Name) > payload.DefaultLimits.MaxString:
		return nil, errorf(CodeBadRequest, "name of %d bytes, at most %d", len(r.Name), payload.DefaultLimits.MaxString)
	}
	provider, precision := r.Provider, r.Precision
	switch provider {
	case "":
		provider = ProviderAuto
	case ProviderAuto, ProviderWasm, ProviderWebGPU:
	default:
		return nil, errorf(CodeBadRequest, "provider %q: want %q, %q or %q", provider, ProviderAuto, ProviderWasm, ProviderWebGPU)
	}
	switch precision {
	case "":
		precision = PrecisionAuto
	case PrecisionAuto, webpkg.FP32, webpkg.FP16:
	default:
		return nil, errorf(CodeBadRequest, "precision %q: want %q, %q or %q", precision, PrecisionAuto, webpkg.FP32, webpkg.FP16)
	}
	man, err := webpkg.Parse(r.Manifest)
	if err != nil {
		return nil, classify(err, CodeBadPackage)
	}
	if _, ok := man.Graphs[webpkg.RoleDecoderFP16]; precision == webpkg.FP16 && !ok {
		return nil, errorf(CodeBadRequest, "precision %q, but the package has no %q graph", webpkg.FP16, webpkg.RoleDecoderFP16)
	}
	s.mu.Lock()
	full := len(s.models) >= s.o.MaxModels
	s.mu.Unlock()
	if full {
		return nil, errorf(CodeTooManyHandles, "%d models open, the limit; close one first", s.o.MaxModels)
	}
	id := engine.Identity{Model: man.Identity()}
	if r.Name != "" {
		id.Name = r.Name
	}
	z := man.Sizes
	gm := engine.GraphModel{Identity: id, Hints: man.Hints(),
		Sizes: engine.GraphSizes{Height: z.Height, Width: z.Width, C: z.C, H: z.H, W: z.W, R: z.R}}
	og, err := s.o.Graphs(ctx, GraphRequest{Manifest: man, ManifestJSON: r.Manifest, Files: r.Files, Provider: provider, Precision: precision})
	if err != nil {
		return nil, classify(err, CodeBadModel)
	}
	if og == nil || og.Graphs == nil {
		return nil, errorf(CodeInternal, "the graph host opened no graphs")
	}
	x, err := engine.NewGraphExecutor(gm, og.Graphs, og.Close)
	if err != nil {
		if og.Close != nil {
			_ = og.Close()
		}
		return nil, &Error{Code: CodeBadPackage, Message: err.Error(), Detail: err.Error()}
	}
	m := &model{x: x, id: x.Identity(), owned: true}
	hd, err := s.add(m)
	if err != nil {
		_ = x.Close()
		return nil, err
	}
	return openGraphsResponse{h, hd, info(m), og.Provider, og.Precision, og.Fallback}, nil
}
