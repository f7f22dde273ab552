#!/usr/bin/env bash
# Creates tools/reference/.venv with the pinned packages of requirements.txt (PyPI only).
# Usage: bash tools/reference/setup.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/python" -m pip install --upgrade pip
"$here/.venv/bin/python" -m pip install -r "$here/requirements.txt"
