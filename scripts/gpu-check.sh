#!/usr/bin/env bash
# The one prepared GPU check of native/ (docs/native.md, "Running the GPU check"): on a machine
# with an NVIDIA GPU, finds an ONNX Runtime build with the CUDA provider, then runs the backend
# conformance tests and the d12-shaped decoder step on CUDA, and writes what it saw to
# ${OUT:-out}/gpu-check.txt. Offline: it downloads nothing. Exit status 0 only if the CUDA tests
# pass.
#
# The ORT library, first found: $FLEXTOK_ORT_LIB; .deps/ort-gpu/libonnxruntime.so (make
# setup-gpu); the capi directory of a pip-installed onnxruntime-gpu. Tests run from a test binary
# built by `go test -c` here (bin/native.test, made by this script when go exists, or carried
# to a machine without Go: `go test -c -o bin/native.test ./native`).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out}"
mkdir -p "$out"
log="$out/gpu-check.txt"
exec > >(tee "$log") 2>&1
echo "== gpu-check $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not available"
lib="${FLEXTOK_ORT_LIB:-}"
if [ -z "$lib" ] && [ -f .deps/ort-gpu/libonnxruntime.so ]; then lib=$PWD/.deps/ort-gpu/libonnxruntime.so; fi
if [ -z "$lib" ]; then
	capi=$(python3 -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))' 2>/dev/null || true)
	if [ -n "$capi" ]; then lib=$(ls "$capi"/libonnxruntime.so* 2>/dev/null | head -1); fi
fi
if [ -z "$lib" ] || [ ! -f "$lib" ]; then
	echo "no ONNX Runtime library with CUDA found (FLEXTOK_ORT_LIB, .deps/ort-gpu, pip onnxruntime-gpu): CUDA path NOT checked"
	exit 2
fi
echo "ORT library: $lib"
ls "$(dirname "$lib")" | grep -i providers || true
if command -v go >/dev/null; then
	mkdir -p bin && go test -c -o bin/native.test ./native || exit 1
fi
[ -x bin/native.test ] || { echo "no bin/native.test and no go: build it with go test -c -o bin/native.test ./native"; exit 2; }
export FLEXTOK_ORT_LIB="$lib" FLEXTOK_REQUIRE_ORT=1 FLEXTOK_TEST_PROVIDER=cuda
cd native
echo "== conformance on CUDA (bounds as on the CPU)"
../bin/native.test -test.count=1 -test.v -test.run 'TestBackend|TestProviders|TestAR' 2>&1 | grep -E '^(=== RUN|--- |PASS|FAIL|ok)|NMSE|PSNR|provider|cuda|CUDA'
status=${PIPESTATUS[0]}
if [ -n "${FLEXTOK_D12:-}" ]; then
	echo "== d12 decoder step, engine (CPU) vs ORT (CUDA)"
	../bin/native.test -test.run '^$' -test.bench 'VersusEngine/d12/step' -test.benchtime 1x -test.timeout 20m 2>&1 | grep -E 'Benchmark|s/step'
fi
echo "== status $status"
exit "$status"
