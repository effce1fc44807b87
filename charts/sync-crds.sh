#!/usr/bin/env bash
# Copy the CRDs from manifests/crds/ (the source of truth) into the Helm chart's crds/ folder,
# byte for byte, and remove chart CRDs whose source is gone.
#   bash charts/sync-crds.sh          # sync
#   bash charts/sync-crds.sh --check  # exit 1 and list differences if out of sync
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/manifests/crds"
DST="$ROOT/charts/mutask/crds"
check=false
[[ "${1:-}" == "--check" ]] && check=true

shopt -s nullglob
status=0
mkdir -p "$DST"
for src in "$SRC"/*.yaml; do
  dst="$DST/$(basename "$src")"
  if ! cmp -s "$src" "$dst"; then
    if $check; then echo "out of sync: $dst"; status=1; else cp "$src" "$dst"; echo "synced: $dst"; fi
  fi
done
for dst in "$DST"/*.yaml; do
  if [[ ! -e "$SRC/$(basename "$dst")" ]]; then
    if $check; then echo "stale: $dst"; status=1; else rm -f "$dst"; echo "removed: $dst"; fi
  fi
done
if $check && [[ $status -ne 0 ]]; then echo "run: bash charts/sync-crds.sh"; fi
exit $status
