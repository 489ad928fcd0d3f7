#!/usr/bin/env bash
# The release: an sdist and a wheel that `twine check` accepts, and the wheel (not this checkout) installed into a
# fresh environment, where convert, align, verify and the remote-code load must work, so that a file missing from
# the package fails here. Run from the repository root with the dev environment's python as $PYTHON.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
ASSETS=${HFR_HF_ASSETS:-../shared/assets}
ASSETS=$(cd "$ASSETS" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m build --outdir "$work/dist" . > "$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
"$PYTHON" -m twine check --strict "$work"/dist/*
ls "$work"/dist/hfr_hf-*.tar.gz "$work"/dist/hfr_hf-*-py3-none-any.whl > /dev/null

"$PYTHON" -m venv "$work/env"
"$work/env/bin/pip" install -q -c constraints.txt "$work"/dist/hfr_hf-*.whl > "$work/install.log" 2>&1 \
    || { grep -v "^WARNING: Location" "$work/install.log" | tail -30; exit 1; }
cd "$work"  # away from the checkout: `import hfr_hf` must find the installed wheel
export PATH="$work/env/bin:$PATH" HF_HUB_OFFLINE=1
python -c "import hfr_hf, sys; assert hfr_hf.__file__.startswith('$work/env'), hfr_hf.__file__; print('hfr_hf', hfr_hf.__version__, 'from', hfr_hf.__file__)"
hfr-hf --help > /dev/null
hfr-hf convert xxs --output model --weights-dir "$ASSETS/weights/edgeface"
hfr-hf align "$ASSETS/faces/att/s1" aligned
hfr-hf verify aligned/1.png aligned/2.png --model model --threshold 0.4 | tee verify.txt
grep -q "same person" verify.txt
python - <<'PY'
# The converted folder loads through its own remote code in a process where hfr_hf cannot be imported.
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "hfr_hf" or name.startswith("hfr_hf."):
            raise ImportError("hfr_hf is blocked")

sys.meta_path.insert(0, Block())
import torch
from transformers import AutoImageProcessor, AutoModel

model = AutoModel.from_pretrained("model", trust_remote_code=True).eval()
processor = AutoImageProcessor.from_pretrained("model", trust_remote_code=True)
print("remote code:", type(model).__name__, tuple(model(**processor(torch.zeros(112, 112, 3, dtype=torch.uint8), return_tensors="pt")).embeddings.shape))
PY
echo "release check passed"
