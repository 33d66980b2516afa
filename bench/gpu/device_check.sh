#!/bin/sh
# Runs on a GPU machine (the device tool of the development sessions) from the repository root,
# with .devcarry/ made by bench/gpu/prepare.sh beside it. Prints what the machine has, then runs
# the CUDA kernel check and the NVDEC check (core_cpp/tests/nvdec_check.cpp). Logs go to $OUT.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "--- driver libraries"
  ldconfig -p | grep -E "libcuda\.so|libnvcuvid|libnvidia-encode" || echo "(none in ldconfig)"
  find / -xdev \( -name 'libnvcuvid.so*' -o -name 'libcuda.so.1' \) 2>/dev/null | head
  echo "--- python"
  python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" 2>&1 | tail -1
  python3 -c "import tensorrt as t; print('tensorrt', t.__version__)" 2>&1 | tail -1
} 2>&1 | tee "$OUT/machine.txt"
nv=$(find / -xdev -name 'libnvcuvid.so.1' 2>/dev/null | head -1)
[ -n "$nv" ] && LD_LIBRARY_PATH="$(dirname "$nv"):${LD_LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="$PWD/.devcarry/lib:${LD_LIBRARY_PATH:-}"
[ "${SKIP_KERNEL_CHECK:-0}" = 1 ] || {
echo "--- nv12_cuda_check" | tee "$OUT/checks.txt"
.devcarry/bin/nv12_cuda_check 2>&1 | tee -a "$OUT/checks.txt"
echo "rc=$?" | tee -a "$OUT/checks.txt"
}
echo "--- nvdec_check" | tee -a "$OUT/checks.txt"
.devcarry/bin/nvdec_check tests/media/vtest-h264.mp4 --big .devcarry/media/big.mp4 \
  --bench tests/media/vtest-h264.mp4 --bench .devcarry/media/1080p.mp4 \
  --streams "${STREAMS:-16}" --seconds "${SECONDS_PER_RUN:-4}" 2>&1 | tee -a "$OUT/checks.txt"
echo "--- nvdec_check, HEVC" | tee -a "$OUT/checks.txt"
.devcarry/bin/nvdec_check .devcarry/media/vtest-hevc.mp4 2>&1 | tee -a "$OUT/checks.txt"
