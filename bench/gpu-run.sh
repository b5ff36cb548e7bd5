#!/usr/bin/env bash
# Runs the gpu bench group on a Linux x64 machine with an NVIDIA GPU, a CUDA build of PyTorch and no
# Node, from the repository's root, with the bundle bench/gpu-bundle.sh wrote: unpacks dist/ and
# node_modules/ into the checkout, installs the Vulkan loader when the system has none (as root),
# points the loader at NVIDIA's driver manifest, and writes the group's JSON lines to RESULTS/gpu.jsonl
# (its progress to RESULTS/gpu.log). The BENCH_GPU_* and BENCH_KOSMOS_G_* variables pass through.
#   bash bench/gpu-run.sh BUNDLE RESULTS
set -euo pipefail
bundle=$(readlink -f "${1:?usage: bash bench/gpu-run.sh BUNDLE RESULTS}")
results=${2:?usage: bash bench/gpu-run.sh BUNDLE RESULTS}
cd "$(dirname "$0")/.."
mkdir -p "$results"

if ! ldconfig -p | grep 'libvulkan\.so\.1' >/dev/null; then
  dpkg -x "$bundle"/libvulkan1_*.deb /
  ldconfig
fi
if [[ -z ${VK_DRIVER_FILES:-} ]]; then
  for manifest in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    if [[ -f $manifest ]]; then export VK_DRIVER_FILES=$manifest; break; fi
  done
fi

node=$(mktemp -d)/node
xz -dc "$bundle/node.xz" > "$node"
chmod +x "$node"
tar -xJf "$bundle/app.tar.xz"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$results/gpu.txt" 2>&1 || true
BENCH_PYTHON=${BENCH_PYTHON:-$(command -v python3)} "$node" --no-concurrent-marking dist/bench/run.js gpu \
  > >(tee "$results/gpu.jsonl") 2> "$results/gpu.log"
