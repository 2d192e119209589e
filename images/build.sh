#!/usr/bin/env bash
# Build one image (lema-cpu | lema-cuda) with the tag lema.orchestration.images derives from its inputs.
# The package index settings are this machine's (pip's config or PIP_INDEX_URL / PIP_EXTRA_INDEX_URL /
# PIP_FIND_LINKS / CA_BUNDLE); they go in as BuildKit secrets and a bind mount, never into a layer.
# file:// indexes (local mirror caches) are not carried in; local find-links directories are (hard links under
# build/image-inputs, mounted at /image-inputs while installing).  Usage: images/build.sh NAME [docker build args]
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: images/build.sh lema-cpu|lema-cuda [docker build args]}
shift
py=${PYTHON:-python3.11}
# A docker CLI that builds with BuildKit: newer CLIs need the buildx plugin; Debian's docker.io CLI has it built in.
docker=${DOCKER:-docker}
if ! DOCKER_BUILDKIT=1 "$docker" build --help 2>/dev/null | grep -q -- --secret; then
  [ -x /usr/bin/docker ] && docker=/usr/bin/docker || { echo "build.sh: $docker cannot build with BuildKit" >&2; exit 1; }
fi
tag=$($py src/lema/orchestration/images.py "$name")
base=${BASE_IMAGE:-$($py src/lema/orchestration/images.py lema-base)}
cfg() { $py -m pip config get "global.$1" 2>/dev/null || true; }
index=${PIP_INDEX_URL:-$(cfg index-url)}
extra=${PIP_EXTRA_INDEX_URL:-$(cfg extra-index-url)}
links=${PIP_FIND_LINKS:-$(cfg find-links)}
ca=${CA_BUNDLE:-${PIP_CERT:-$(cfg cert)}}

inputs=build/image-inputs
secrets=build/image-secrets
rm -rf "$inputs"
mkdir -p "$inputs" "$secrets"
chmod 700 "$secrets"
uv_args="--index-strategy unsafe-best-match"
pip_extra=""
pip_links=""
[ -n "$index" ] && uv_args+=" --index-url $index"
for u in $extra; do
  case $u in
    file://*) echo "build.sh: not carrying local index $u into the build" >&2 ;;
    *) pip_extra+=" $u"; uv_args+=" --extra-index-url $u" ;;
  esac
done
i=0
for l in $links; do
  l=${l#file://}
  [ -d "$l" ] || continue
  cp -al "$l" "$inputs/links$i" 2>/dev/null || cp -a "$l" "$inputs/links$i"
  pip_links+=" /image-inputs/links$i"
  uv_args+=" --find-links /image-inputs/links$i"
  i=$((i + 1))
done
{
  [ -n "$index" ] && echo "PIP_INDEX_URL='$index'"
  [ -n "$pip_extra" ] && echo "PIP_EXTRA_INDEX_URL='${pip_extra# }'"
  [ -n "$pip_links" ] && echo "PIP_FIND_LINKS='${pip_links# }'"
  echo "UV_ARGS='$uv_args'"
} > "$secrets/index.env"
secret_args=(--secret "id=index,src=$secrets/index.env")
[ -n "$ca" ] && [ -f "$ca" ] && secret_args+=(--secret "id=ca,src=$ca")

dockerfile=images/Dockerfile.${name#lema-}
echo "building $tag from $dockerfile on $base"
start=$(date +%s)
DOCKER_BUILDKIT=1 nice "$docker" build --progress=plain -f "$dockerfile" --build-arg "BASE=$base" \
  "${secret_args[@]}" -t "$tag" "$@" .
echo "built $tag in $(( $(date +%s) - start ))s"
