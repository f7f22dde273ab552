#!/usr/bin/env bash
# Installs the ONNX Runtime CPU shared library for native/ from the npm package onnxruntime-node
# (its prebuilt libonnxruntime.so.1; --ignore-scripts, so nothing else is downloaded), at the
# version in native/ORT_VERSION, into .deps/ort/. Idempotent. The library path is then
#   .deps/ort/libonnxruntime.so   (or set $FLEXTOK_ORT_LIB / native.Options.LibraryPath)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(cat "$root/native/ORT_VERSION")
dest="$root/.deps/ort"
case "$(uname -s)-$(uname -m)" in
	Linux-x86_64) arch=x64 ;;
	Linux-aarch64) arch=arm64 ;;
	*) echo "setup-ort: no prebuilt ONNX Runtime for $(uname -s)-$(uname -m) here; set FLEXTOK_ORT_LIB" >&2; exit 0 ;;
esac
if [ -f "$dest/VERSION" ] && [ "$(cat "$dest/VERSION")" = "$version" ] && [ -f "$dest/libonnxruntime.so" ]; then
	echo "onnxruntime $version present: $dest/libonnxruntime.so"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm install --ignore-scripts --no-audit --no-fund --silent "onnxruntime-node@$version" >/dev/null)
lib="$tmp/node_modules/onnxruntime-node/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
[ -f "$lib" ] || { echo "setup-ort: $lib not in onnxruntime-node@$version" >&2; exit 1; }
mkdir -p "$dest"
cp "$lib" "$dest/libonnxruntime.so.tmp" && mv "$dest/libonnxruntime.so.tmp" "$dest/libonnxruntime.so"
echo "$version" > "$dest/VERSION"
echo "installed onnxruntime $version (CPU): $dest/libonnxruntime.so"
