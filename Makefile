# FlexTok SDK. `make run` sets up and runs the main job; `make test` runs every check CI runs.
SHELL := /bin/bash
GO ?= go
WASM_PATH := $(shell $(GO) env GOROOT)/lib/wasm
FUZZTIME ?= 10m
# `make fuzz-short` fuzzes each target briefly; not part of `make test`, whose Go tests replay each
# target's seeds and testdata/fuzz corpus deterministically (RATIONALE: fuzzing outside CI).
SHORT_FUZZTIME ?= 15s
FUZZ_TARGETS := ./sdk/payload:FuzzDecode ./sdk/payload:FuzzDecodeStream \
	./internal/safetensors:FuzzOpen ./sdk/internal/pyliteral:FuzzParse \
	./sdk/image:FuzzDecode ./sdk/image:FuzzExifOrientation ./sdk/service:FuzzHandle ./sdk/model:FuzzParseConfigJSON \
	./sdk/ar:FuzzParseConfig \
	./server:FuzzRequest ./server:FuzzGenerate ./sdk/webpkg:FuzzParse

# The official-code reference checkpoint (random weights) used by the browser conformance test.
REF_MODEL := conformance/testdata/official/c1_w32_zero_e2

.PHONY: setup run build test test-go test-wasm fuzz-short fuzz check bench clean

setup:
	$(GO) mod download
	@command -v node >/dev/null || { echo "node is needed for GOOS=js tests (apt-get install nodejs)"; exit 1; }
	$(MAKE) setup-native

# ONNX Runtime's CPU library (.deps/ort) and the onnx checker (.deps/onnx-venv) for native/;
# idempotent, so test-go runs it too and `make test` works on a fresh clone by itself.
.PHONY: setup-native
setup-native:
	@bash scripts/setup-ort.sh
	@bash scripts/setup-onnx-checker.sh

# The CUDA build of ONNX Runtime for native/ (.deps/ort-gpu; docs/native.md). Not part of setup:
# about 250 MB, and CUDA 12 + cuDNN 9 from the machine (scripts/setup-ort-gpu.sh --cuda-libs).
.PHONY: setup-gpu
setup-gpu:
	bash scripts/setup-ort-gpu.sh

build:
	$(GO) build -o bin/flextok ./cmd/flextok

# The main job: the embedded default model encodes the held-out sample images, decodes them from
# 1, 2, 4, ... 32 tokens, prints PSNR/SSIM by k and writes the coarse-to-fine grid; then one
# payload round trip through the CLI, and the browser demo is built (`./bin/flextok serve`).
run: setup build demo
	./bin/flextok version
	@mkdir -p out
	./bin/flextok eval --images testdata/heldout --grid out/grid.png --json out/eval.json --force
	./bin/flextok encode testdata/heldout/000_cross.png -o out/sample.msgpack --force
	./bin/flextok inspect out/sample.msgpack
	./bin/flextok decode out/sample.msgpack -k 4 -o out/sample_k4.png --force
	./bin/flextok encode testdata/heldout -o out/tokens_ort --backend ort --batch 16 --force
	./bin/flextok decode out/tokens_ort -o out/decoded_ort/ --backend ort --batch 16 -k 8 --force
	./bin/flextok generate --class all -n 8 --seed 1 -o out/generated --png --grid out/generated.png --force
	@echo "wrote out/grid.png (rows: images; columns: input, then k = 1, 2, 4, ..., 32), out/eval.json,"
	@echo "out/sample.msgpack, out/sample_k4.png, and the same model in ONNX Runtime: out/tokens_ort/, out/decoded_ort/;"
	@echo "generated images: out/generated/ (payloads and PNGs), out/generated.png (rows: classes; columns: samples)."
	@echo "Demo: ./bin/flextok serve, then open http://127.0.0.1:8080/"

test: check test-go loadtest-smoke test-wasm wasm-smoke test-bindings test-browser

test-go: setup-native
	FLEXTOK_REQUIRE_ORT=1 FLEXTOK_ORT_LIB=$(CURDIR)/.deps/ort/libonnxruntime.so $(GO) test -count=1 ./...
	FLEXTOK_REQUIRE_ORT=1 FLEXTOK_ORT_LIB=$(CURDIR)/.deps/ort/libonnxruntime.so $(GO) test -count=1 -race ./native/... ./server/...

# The same Go tests of sdk/... compiled to GOOS=js and run under Node, and those of the GOOS=js
# front end (wasm/js's Promise-returning handle, wasm/internal/jsasync's Await).
test-wasm:
	PATH="$(WASM_PATH):$$PATH" GOOS=js GOARCH=wasm $(GO) test -count=1 -short ./sdk/... ./wasm/...

fuzz-short:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(SHORT_FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(SHORT_FUZZTIME) -fuzzminimizetime 5s -parallel 1 || exit 1; \
	done

# Long fuzzing, outside CI: FUZZTIME per target (default 10m).
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 30s || exit 1; \
	done

# The build-matrix gate, vet, staticcheck (pinned in go.mod's tool block), gofmt and go mod tidy.
check:
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build ./...
	CGO_ENABLED=0 $(GO) vet ./native/...
	GOOS=js GOARCH=wasm $(GO) build ./sdk/... ./wasm/js/... ./wasm/internal/...
	GOOS=wasip1 GOARCH=wasm $(GO) build ./sdk/... ./wasm/wasip1/...
	$(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) vet ./sdk/... ./wasm/js/... ./wasm/internal/... ./tools/webbench
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/... ./wasm/wasip1/...
	$(GO) tool staticcheck ./...
	$(GO) test -count=1 -run TestImports ./sdk/
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@tmp=$$(mktemp -d); cp go.mod go.sum $$tmp/; $(GO) mod tidy; \
	if ! cmp -s go.mod $$tmp/go.mod || ! cmp -s go.sum $$tmp/go.sum; then \
		echo "go mod tidy would change go.mod/go.sum:"; diff $$tmp/go.mod go.mod; \
		cp $$tmp/go.mod $$tmp/go.sum .; rm -rf $$tmp; exit 1; fi; rm -rf $$tmp

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./sdk/...

# The pure-Go kernels and engine against ONNX Runtime's CPU provider, side by side in one run
# (docs/benchmarks.md): the decoder's matrix products (1 and 2 threads), one decoder step at d12
# and d18, d12 tokenize throughput. Random-weight checkpoints are made if missing (d18: 3.8 GB).
# Needs cgo and the ONNX Runtime library (make setup); not part of `make test`.
.PHONY: bench-native
BENCH_D12 ?= /tmp/d12
BENCH_D18 ?= /tmp/d18
bench-native:
	@test -f $(BENCH_D12)/model.safetensors || $(GO) run ./tools/mkcheckpoint -size d12 -o $(BENCH_D12)
	@test -f $(BENCH_D18)/model.safetensors || $(GO) run ./tools/mkcheckpoint -size d18 -o $(BENCH_D18)
	FLEXTOK_ORT_LIB=$${FLEXTOK_ORT_LIB:-$(CURDIR)/.deps/ort/libonnxruntime.so} \
		$(GO) test -tags ortbench ./sdk/internal/kernels -run '^$$' -bench DecoderMatmul -benchtime 20x -v
	FLEXTOK_ORT_LIB=$${FLEXTOK_ORT_LIB:-$(CURDIR)/.deps/ort/libonnxruntime.so} FLEXTOK_D12=$(BENCH_D12) FLEXTOK_D18=$(BENCH_D18) \
		$(GO) test ./native -run '^$$' -bench VersusEngine -benchtime 1x -timeout 60m -v

# bf16 against fp32, ONNX Runtime and the official PyTorch code (issue 16; docs/benchmarks.md):
# the matrix products, load time and peak RSS of a load in fp32 and bf16, with every part and
# decode-only (each in its own process), the interleaved d12 table (decoder step, VAE decode,
# tokenize, 20-step decode; medians and ranges of BENCH_ROUNDS rounds), then, when
# tools/reference has its venv and the official code, one interleaved run of the official code
# in fp32 and under bf16 autocast, the Go engine in fp32 and bf16 and ONNX Runtime (through
# bin/flextok bench --driven; BENCH_TORCH_ROUNDS rounds). Not part of `make test`.
.PHONY: bench-bf16
BENCH_ROUNDS ?= 5
BENCH_TORCH_ROUNDS ?= 3
bench-bf16: build
	@test -f $(BENCH_D12)/model.safetensors || $(GO) run ./tools/mkcheckpoint -size d12 -o $(BENCH_D12)
	$(GO) test ./sdk/internal/kernels -run '^$$' -bench LinearBF16 -benchtime 20x
	$(GO) test ./sdk/internal/kernels -run '^$$' -bench 'Conv2dVAE' -benchtime 2x
	for p in fast bf16 fast-decode bf16-decode; do \
		FLEXTOK_D12=$(BENCH_D12) $(GO) test ./sdk/engine -run '^$$' -bench "D12/op=load/path=$$p\$$" -benchtime 1x -timeout 30m || exit 1; done
	FLEXTOK_ORT_LIB=$${FLEXTOK_ORT_LIB:-$(CURDIR)/.deps/ort/libonnxruntime.so} FLEXTOK_D12=$(BENCH_D12) FLEXTOK_ROUNDS=$(BENCH_ROUNDS) \
		$(GO) test ./native -run '^$$' -bench Interleaved -benchtime 1x -timeout 90m -v
	@if [ -x tools/reference/.venv/bin/python ] && [ -d tools/reference/.official/flextok ]; then \
		FLEXTOK_ORT_LIB=$${FLEXTOK_ORT_LIB:-$(CURDIR)/.deps/ort/libonnxruntime.so} tools/reference/.venv/bin/python \
			tools/reference/bench_torch.py $(BENCH_D12) --rounds $(BENCH_TORCH_ROUNDS) --go bin/flextok --go-backends go,go-bf16,ort; \
	else echo "bench-bf16: no tools/reference/.venv or .official: the PyTorch comparison is skipped (tools/reference/setup.sh, checkout_official.sh)"; fi

clean:
	rm -rf bin out dist bindings/dist

# ---------------------------------------------------------------------------------------------
# WebAssembly front ends of sdk/service (wasm/js, wasm/wasip1). Appended block; see
# sdk/service's package documentation for the protocol.
.PHONY: wasm wasm-smoke
WASM_GOFLAGS := -trimpath

wasm:
	@mkdir -p dist
	GOOS=js GOARCH=wasm $(GO) build $(WASM_GOFLAGS) -o dist/flextok.wasm ./wasm/js
	GOOS=js GOARCH=wasm $(GO) build $(WASM_GOFLAGS) -tags noweights -o dist/flextok-lean.wasm ./wasm/js
	GOOS=wasip1 GOARCH=wasm $(GO) build $(WASM_GOFLAGS) -buildmode=c-shared -o dist/flextok-wasip1.wasm ./wasm/wasip1
	cp $(WASM_PATH)/wasm_exec.js dist/wasm_exec.js
	@for f in dist/flextok.wasm dist/flextok-lean.wasm dist/flextok-wasip1.wasm; do \
		echo "$$f: $$(wc -c <$$f) bytes, $$(gzip -9c $$f | wc -c) gzipped"; done

# The GOOS=js modules under Node: open the c1 checkpoint from bytes, encode, decode; the default
# model opens without weights in flextok.wasm and is absent from flextok-lean.wasm.
wasm-smoke: wasm
	node wasm/js/smoke_test.mjs dist/flextok.wasm dist/wasm_exec.js conformance/testdata/official/c1_w32_zero_e2
	node wasm/js/smoke_test.mjs dist/flextok-lean.wasm dist/wasm_exec.js conformance/testdata/official/c1_w32_zero_e2 lean

# ---------------------------------------------------------------------------------------------
# bindings/: the TypeScript package @flextok/sdk (see bindings/README.md). Appended block.
# `make bindings` installs the pinned npm dev dependencies (npm ci, when the lock file is newer
# than node_modules), compiles src/ and test/ with tsc into bindings/dist/, and puts the
# GOOS=js module and its wasm_exec.js next to the compiled package (bindings/dist/src/), where
# initialize() finds them by default, and the default AR model's files in bindings/dist/src/ar/
# (Model.openAR() without files reads them: they are not in flextok.wasm; RATIONALE). `make test-bindings` runs the Node tests (node:test).
.PHONY: bindings test-bindings
bindings:
	cd bindings && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && npx tsc -p tsconfig.json
	@mkdir -p bindings/dist/src
	GOOS=js GOARCH=wasm $(GO) build -trimpath -o bindings/dist/src/flextok.wasm ./wasm/js
	GOOS=js GOARCH=wasm $(GO) build -trimpath -tags noweights -o bindings/dist/src/flextok-lean.wasm ./wasm/js
	cp $(WASM_PATH)/wasm_exec.js bindings/dist/src/wasm_exec.js
	@mkdir -p bindings/dist/src/ar
	cp models/default/ar/config.json models/default/ar/model.safetensors bindings/dist/src/ar/
	@echo "bindings/dist/src: $$(cat bindings/dist/src/*.js | wc -c) bytes of JS ($$(cat bindings/dist/src/*.js | gzip -9 | wc -c) gzipped)," \
		"flextok.wasm $$(wc -c <bindings/dist/src/flextok.wasm) bytes ($$(gzip -9c bindings/dist/src/flextok.wasm | wc -c) gzipped)," \
		"ar/model.safetensors $$(wc -c <bindings/dist/src/ar/model.safetensors) bytes ($$(gzip -9c bindings/dist/src/ar/model.safetensors | wc -c) gzipped)"

test-bindings: bindings
	cd bindings && node --test dist/test/*.test.js

# ---------------------------------------------------------------------------------------------
# The progressive-decoding demo (`flextok serve`, web/) and its headless Chromium test
# (conformance/browser/; docs/demo.md). Appended block. `make demo` copies the browser build of
# @flextok/sdk (bindings/dist/src: ES modules, worker.js, flextok.wasm, wasm_exec.js) and
# @msgpack/msgpack's ES modules into web/static/dist/ (gitignored), points codec.js's bare
# import at them (no import map: CSP without inline scripts), and builds bin/flextok, which
# embeds web/static. `make test-browser` installs Debian's chromium if needed and runs the test.
.PHONY: demo demo-assets test-browser
DEMO_MODEL ?= $(REF_MODEL)
demo-assets: bindings
	rm -rf web/static/dist && mkdir -p web/static/dist/msgpack
	cd bindings/dist/src && cp browser.js core.js codec.js errors.js http.js protocol.js types.js worker.js ortweb.js package.js flextok.wasm wasm_exec.js ../../../web/static/dist/
	@mkdir -p web/static/dist/ort
	cd bindings/node_modules/onnxruntime-web/dist && cp ort.min.mjs ort-wasm-simd-threaded.jsep.mjs ort-wasm-simd-threaded.jsep.wasm ../../../../web/static/dist/ort/
	cd bindings/node_modules/@msgpack/msgpack/dist.esm && find . -name "*.mjs" -exec cp --parents {} ../../../../../web/static/dist/msgpack/ \;
	sed -i 's#from "@msgpack/msgpack"#from "./msgpack/index.mjs"#' web/static/dist/codec.js
	@! grep -l '@msgpack/msgpack"' web/static/dist/*.js || { echo "a bare @msgpack/msgpack import is left"; exit 1; }

demo: demo-assets
	$(GO) build -o bin/flextok ./cmd/flextok
	@echo "run: ./bin/flextok serve   (the embedded default model; then open http://127.0.0.1:8080/)"
	@echo "     -m DIR serves another model; $(REF_MODEL) (the browser test's) has random weights and decodes to noise"

test-browser: demo
	bash scripts/setup-chromium.sh
	cd conformance/browser && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && \
		node test.mjs --flextok ../../bin/flextok --model ../../$(DEMO_MODEL)
	cd conformance/browser && node web.mjs --quick --flextok ../../bin/flextok

# The web-model speed run, outside CI (docs/benchmarks.md): a random d12 checkpoint
# (tools/mkcheckpoint, bf16 to fit the Go wasm side's memory) and its web package in
# $(BENCH_WEB_DIR), then one headless Chromium page: onnxruntime-web wasm (SIMD, 2 threads,
# cross-origin isolated) against the Go wasm engine on one guided decoder step, the 20-step
# decode and the download size. Takes about 10 minutes on 2 cores.
BENCH_WEB_DIR ?= out/bench-web
.PHONY: bench-web
bench-web: bindings
	bash scripts/setup-chromium.sh
	@[ -f $(BENCH_WEB_DIR)/ckpt/model.safetensors ] || $(GO) run ./tools/mkcheckpoint -size d12 -dtype bf16 -o $(BENCH_WEB_DIR)/ckpt
	@[ -f $(BENCH_WEB_DIR)/pkg/manifest.json ] || $(GO) run ./cmd/flextok export-web -m $(BENCH_WEB_DIR)/ckpt -o $(BENCH_WEB_DIR)/pkg --fp16
	cd conformance/browser && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && node web.mjs --bench $(abspath $(BENCH_WEB_DIR))

# "Done when" of issue 15: the d12-shaped checkpoint of bench-web decoded in headless Chromium by
# onnxruntime-web's wasm and WebGPU (SwiftShader) providers within the d12 bounds of the native
# engine (1 guided step), outside CI: about 1 minute for the wasm provider and 25 minutes for WebGPU
# on SwiftShader (software) on 2 otherwise idle cores (docs/web-executor.md).
.PHONY: test-browser-d12
test-browser-d12: bindings
	bash scripts/setup-chromium.sh
	@[ -f $(BENCH_WEB_DIR)/ckpt/model.safetensors ] || $(GO) run ./tools/mkcheckpoint -size d12 -dtype bf16 -o $(BENCH_WEB_DIR)/ckpt
	cd conformance/browser && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && node web.mjs --d12 $(abspath $(BENCH_WEB_DIR))/ckpt

# The hybrid executor's full browser conformance (every official checkpoint, WebGPU on every case:
# slow on SwiftShader), outside CI.
.PHONY: test-browser-web
test-browser-web: bindings
	bash scripts/setup-chromium.sh
	cd conformance/browser && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && node web.mjs

# fetchModelPackage (bindings/src/package.ts) in headless Chromium with the browser's own Cache
# API: download, reload from the cache, resume after a server dies half way, a corrupted chunk
# (bindings/test/package-chromium.mjs; docs/web-package.md). Part of `make test`.
.PHONY: test-package-browser
test-package-browser: demo
	bash scripts/setup-chromium.sh
	cd conformance/browser && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; }
	node bindings/test/package-chromium.mjs --flextok bin/flextok
test: test-package-browser

# ---------------------------------------------------------------------------------------------
# The token service's load test (tools/loadtest; docs/server.md): it starts bin/flextok serve
# on 127.0.0.1 with LOADTEST_SERVER_ARGS, runs LOADTEST_CLIENTS clients for LOADTEST_TIME over
# a mix of /v1/encode, /v1/decode and LOADTEST_GENERATE of /v1/generate (the embedded default
# AR model; 0 errors expected: the clients fit the work + queue slots), then LOADTEST_OVER clients beyond capacity (429s, no crash) and rounds of eight
# parallel pixel bombs (413s), and fails if the server's peak RSS passes LOADTEST_MAX_RSS_MB.
# `make loadtest` is the full run (outside CI); `make loadtest-smoke`, a few seconds, is part
# of `make test`.
.PHONY: loadtest loadtest-smoke
LOADTEST_SERVER_ARGS ?= --max-concurrent 1 --max-queue 4
LOADTEST_CLIENTS ?= 4
LOADTEST_TIME ?= 30s
LOADTEST_OVER ?= 64
LOADTEST_MAX_RSS_MB ?= 512
LOADTEST_GENERATE ?= 0.2
loadtest: build
	@mkdir -p out
	$(GO) run ./tools/loadtest -bin bin/flextok -server-args "$(LOADTEST_SERVER_ARGS)" -c $(LOADTEST_CLIENTS) \
		-generate $(LOADTEST_GENERATE) -d $(LOADTEST_TIME) -over $(LOADTEST_OVER) -bomb-rounds 20 -max-rss-mb $(LOADTEST_MAX_RSS_MB) -json out/loadtest.json

loadtest-smoke: build
	$(GO) run ./tools/loadtest -bin bin/flextok -server-args "$(LOADTEST_SERVER_ARGS)" -c $(LOADTEST_CLIENTS) \
		-generate $(LOADTEST_GENERATE) -d 2s -over 16 -bomb-rounds 1 -max-rss-mb $(LOADTEST_MAX_RSS_MB)
