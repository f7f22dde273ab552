#!/usr/bin/env bash
# Installs the official ONNX checker (the `onnx` Python package, pinned to the release whose
# onnx.proto generated native/onnx/onnxpb) into .deps/onnx-venv, for the graph validation test
# of native/onnx. Needs python3 with venv and PyPI; no PyTorch. Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=1.17.0
venv="$root/.deps/onnx-venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import onnx, sys; sys.exit(onnx.__version__ != '$version')" 2>/dev/null; then
	echo "onnx checker $version present: $venv"
	exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "onnx==$version" "numpy<2.3"
echo "installed the onnx checker $version: $venv"
