#!/usr/bin/env bash
# Creates train/.venv with the pinned packages of requirements.txt (PyPI only).
# Usage: bash train/setup.sh
# (On Linux the PyPI torch wheel pulls CUDA libraries; training needs only the CPU.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/python" -m pip install --upgrade pip
"$here/.venv/bin/python" -m pip install -r "$here/requirements.txt"
