#!/usr/bin/env bash
# Regenerates onnx.pb.go from the onnx.proto of a pinned ONNX release (the wheel on PyPI carries
# it). Needs pip, protoc (Debian: protobuf-compiler) and Go. The generated file is committed, so
# building the SDK needs none of these. Run: go generate ./native/onnx/onnxpb
set -euo pipefail
ONNX_VERSION=1.17.0              # IR version 10, opsets up to 22
PROTOC_GEN_GO=v1.36.12           # google.golang.org/protobuf, as in go.mod
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip download "onnx==$ONNX_VERSION" --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 --python-version 3.11 -d "$tmp" -q
(cd "$tmp" && unzip -q -o onnx-*.whl onnx/onnx.proto)
GOBIN="$tmp/bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO"
PATH="$tmp/bin:$PATH" protoc -I "$tmp" \
  --go_out="$tmp" --go_opt=paths=source_relative \
  --go_opt=Monnx/onnx.proto=github.com/flextok-sdk/flextok/native/onnx/onnxpb \
  onnx/onnx.proto
cp "$tmp/onnx/onnx.pb.go" "$here/onnx.pb.go"
echo "onnx.pb.go generated from onnx $ONNX_VERSION"
