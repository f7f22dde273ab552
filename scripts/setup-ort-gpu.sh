#!/usr/bin/env bash
# Installs a CUDA build of ONNX Runtime for native/ into .deps/ort-gpu/: libonnxruntime.so.1.X.Y,
# libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so, taken from PyPI's
# onnxruntime-gpu wheel (Linux x86_64; the shared libraries do not depend on Python). The
# version is native/ORT_VERSION when PyPI has it, else the newest release of the same
# MAJOR.MINOR family (set ORT_GPU_VERSION to choose). Idempotent.
#
# The CUDA provider needs the CUDA 12 runtime, cuBLAS, cuFFT, cuRAND and cuDNN 9 from the
# machine (LD_LIBRARY_PATH or the loader's cache) and a driver that supports CUDA 12. With
# --cuda-libs the script also installs those libraries from NVIDIA's PyPI wheels
# (nvidia-*-cu12, over 1 GB) into .deps/ort-gpu/nvidia and prints the LD_LIBRARY_PATH to set.
#
#   scripts/setup-ort-gpu.sh [--cuda-libs]
#   FLEXTOK_ORT_LIB=$PWD/.deps/ort-gpu/libonnxruntime.so  (or native.Options.LibraryPath)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.deps/ort-gpu"
cuda_libs=0
for a in "$@"; do
	case "$a" in
		--cuda-libs) cuda_libs=1 ;;
		-h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
		*) echo "setup-ort-gpu: unknown argument $a (want --cuda-libs)" >&2; exit 2 ;;
	esac
done
if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
	echo "setup-ort-gpu: PyPI's onnxruntime-gpu wheels are for Linux x86_64 (this is $(uname -s)-$(uname -m))" >&2
	exit 1
fi
pip=(python3 -m pip)
"${pip[@]}" --version >/dev/null 2>&1 || { echo "setup-ort-gpu: needs python3 with pip" >&2; exit 1; }

want=$(tr -d '[:space:]' <"$root/native/ORT_VERSION")
family=${want%.*}
version=${ORT_GPU_VERSION:-}
if [ -z "$version" ]; then
	available=$("${pip[@]}" index versions onnxruntime-gpu 2>/dev/null | sed -n 's/^Available versions: //p' | tr -d ' ' | tr ',' '\n')
	[ -n "$available" ] || { echo "setup-ort-gpu: cannot list onnxruntime-gpu versions on PyPI (set ORT_GPU_VERSION)" >&2; exit 1; }
	if grep -qxF "$want" <<<"$available"; then
		version=$want
	else
		version=$(grep "^${family//./\\.}\.[0-9]*$" <<<"$available" | sort -t. -k3,3n | tail -1 || true)
		[ -n "$version" ] || { echo "setup-ort-gpu: no onnxruntime-gpu $family.x on PyPI (set ORT_GPU_VERSION)" >&2; exit 1; }
		echo "onnxruntime-gpu $want is not on PyPI; using $version (same $family family)"
	fi
fi

lib="$dest/libonnxruntime.so.$version"
if [ -f "$dest/VERSION" ] && [ "$(cat "$dest/VERSION")" = "$version" ] && [ -f "$lib" ] &&
	[ -f "$dest/libonnxruntime_providers_cuda.so" ] && [ -f "$dest/libonnxruntime_providers_shared.so" ]; then
	echo "onnxruntime-gpu $version present: $dest"
else
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	echo "downloading onnxruntime-gpu $version (about 250 MB)"
	"${pip[@]}" download "onnxruntime-gpu==$version" --no-deps --only-binary=:all: \
		--platform manylinux_2_28_x86_64 --python-version 3.11 -d "$tmp" --quiet
	whl=$(ls "$tmp"/onnxruntime_gpu-*.whl)
	python3 - "$whl" "$tmp/x" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.startswith("onnxruntime/capi/libonnxruntime"):
            z.extract(n, sys.argv[2])
PY
	capi="$tmp/x/onnxruntime/capi"
	for f in "libonnxruntime.so.$version" libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
		[ -f "$capi/$f" ] || { echo "setup-ort-gpu: $f not in $(basename "$whl")" >&2; exit 1; }
	done
	mkdir -p "$dest"
	rm -f "$dest"/libonnxruntime.so.* "$dest/VERSION"
	for f in "libonnxruntime.so.$version" libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
		cp "$capi/$f" "$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f"
	done
	ln -sfn "libonnxruntime.so.$version" "$dest/libonnxruntime.so.1"
	ln -sfn "libonnxruntime.so.$version" "$dest/libonnxruntime.so"
	echo "$version" >"$dest/VERSION"
	echo "installed onnxruntime-gpu $version: $dest"
fi

ld=""
if [ "$cuda_libs" = 1 ]; then
	echo "installing the CUDA 12 and cuDNN 9 libraries from NVIDIA's wheels into $dest/nvidia (over 1 GB)"
	"${pip[@]}" install --quiet --upgrade --only-binary=:all: --target "$dest/nvidia-site" \
		'nvidia-cuda-runtime-cu12>=12,<13' 'nvidia-cublas-cu12>=12,<13' 'nvidia-cufft-cu12>=11,<12' \
		'nvidia-curand-cu12>=10,<11' 'nvidia-cudnn-cu12>=9,<10'
	ln -sfn nvidia-site/nvidia "$dest/nvidia"
fi
if [ -d "$dest/nvidia" ]; then
	ld=$(find -L "$dest/nvidia" -mindepth 2 -maxdepth 2 -type d -name lib | sort | paste -sd: -)
fi

needs=""
if command -v readelf >/dev/null; then
	needs=$(readelf -d "$dest/libonnxruntime_providers_cuda.so" | sed -n 's/.*NEEDED.*\[\(lib\(cu\|nv\)[^]]*\)\].*/\1/p' | paste -sd' ' -)
fi
cat <<EOF

Use it:
  FLEXTOK_ORT_LIB=$dest/libonnxruntime.so        (or native.Options.LibraryPath)
  with native.Options.Provider "cuda" (required) or "auto" (CUDA, else the CPU with a logged reason).
The CUDA provider loads ${needs:-the CUDA 12 runtime, cuBLAS, cuFFT, cuRAND and cuDNN 9} at session creation;
the machine needs an NVIDIA driver for CUDA 12 and those libraries on the loader's path.
EOF
if [ -n "$ld" ]; then
	echo "They are in $dest/nvidia:"
	echo "  export LD_LIBRARY_PATH=$ld\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
else
	echo "Without system CUDA/cuDNN: scripts/setup-ort-gpu.sh --cuda-libs installs them from PyPI (over 1 GB)."
fi
