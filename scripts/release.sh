#!/usr/bin/env bash
# Cross-builds release binaries of stratus with the version stamped in:
#
#   scripts/release.sh v1.2.3 [OUTDIR]
#
# OUTDIR (default dist/) gets stratus-VERSION-OS-ARCH[.exe] for linux,
# darwin and windows on amd64 and arm64, and SHA256SUMS. Static binaries
# (no cgo); `stratus version` prints the version and the VCS revision.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,9p' "$0"; exit 2; }
VERSION=$1
OUT=${2:-dist}
case "$VERSION" in v[0-9]*) ;; *) echo "version must look like v1.2.3, not $VERSION" >&2; exit 2 ;; esac
mkdir -p "$OUT"
for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64; do
  os=${target%/*}; arch=${target#*/}
  name="stratus-$VERSION-$os-$arch"
  [ "$os" = windows ] && name="$name.exe"
  echo "building $name"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=true \
    -ldflags "-s -w -X main.version=$VERSION" -o "$OUT/$name" ./cmd/stratus
done
(cd "$OUT" && sha256sum stratus-"$VERSION"-* > SHA256SUMS)
echo "built into $OUT:"; ls -l "$OUT"
