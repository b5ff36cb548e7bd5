#!/usr/bin/env bash
# Packs what the gpu bench group needs beyond a checkout of this repository, for a Linux x64 GPU
# machine that has the checkout, a CUDA build of PyTorch and no Node (bench/gpu-run.sh runs it):
#   node.xz              the node binary this build runs on (24 MB for Node 20)
#   app.tar.xz           dist/ (without the tests, the page and the static site) and node_modules/
#                        without other platforms' binaries, the browser runtime and the build tools
#                        (about 37 MB)
#   libvulkan1_*.deb     the Vulkan loader onnxruntime-node's WebGPU provider (Dawn) opens
# Run it after `npm run build` on a Linux x64 machine with apt (Debian or Ubuntu).
#   bash bench/gpu-bundle.sh OUT [--force]
set -euo pipefail
out=${1:?usage: bash bench/gpu-bundle.sh OUT [--force]}
force=${2:-}
cd "$(dirname "$0")/.."
[[ $(uname -sm) == "Linux x86_64" ]] || { echo "gpu-bundle: the bundle is for Linux x64; this is $(uname -sm)" >&2; exit 1; }
[[ -f dist/bench/run.js ]] || { echo "gpu-bundle: dist/ is not built; run npm run build first" >&2; exit 1; }
if [[ -e $out && $force != --force ]]; then echo "gpu-bundle: $out exists; pass --force to replace it" >&2; exit 1; fi
rm -rf "$out" && mkdir -p "$out"

xz -T0 -9 -c "$(readlink -f "$(command -v node)")" > "$out/node.xz"
# The world reads emojibase's English labels only.
locales=()
for locale in node_modules/emojibase-data/*/; do [[ $locale == */en/ ]] || locales+=(--exclude="${locale%/}"); done
tar -cf - "${locales[@]}" --exclude=dist/test --exclude=dist/site --exclude=dist/fuzz --exclude=dist/web \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/darwin' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/win32' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/linux/arm64' \
  --exclude=node_modules/onnxruntime-web --exclude=node_modules/typescript \
  --exclude=node_modules/esbuild --exclude=node_modules/@esbuild --exclude=node_modules/playwright-core \
  --exclude='*.d.ts' --exclude='*.map' \
  dist node_modules | xz -T0 -9 > "$out/app.tar.xz"
(cd "$out" && apt-get download libvulkan1 >/dev/null)
du -sh "$out"/*
