#!/usr/bin/env bash
# Extracts the official apple/ml-flextok code into tools/reference/.official/ (gitignored; never commit it).
# Usage: bash tools/reference/checkout_official.sh <git dir or clone of apple/ml-flextok> [commit]
# Blobs missing from a partial mirror (e.g. the large notebook) are skipped.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$1"; rev="${2:-87d00cc8babf4a25ffce0f3f0c4d8b529d3d6abf}"
if [ -d "$src/.git" ]; then src="$src/.git"; fi
dst="$here/.official"
rm -rf "$dst"; mkdir -p "$dst"
git --git-dir="$src" ls-tree -r --name-only "$rev" | while read -r f; do
  mkdir -p "$dst/$(dirname "$f")"
  git --git-dir="$src" show "$rev:$f" > "$dst/$f" 2>/dev/null || { echo "skipped $f" >&2; rm -f "$dst/$f"; }
done
git --git-dir="$src" rev-parse "$rev" > "$dst/COMMIT"
