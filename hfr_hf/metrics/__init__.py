"""`evaluate` metric modules shipped with the package, loadable offline by path:

import evaluate
from hfr_hf.metrics import HFR_VERIFICATION

metric = evaluate.load(HFR_VERIFICATION)  # no network, works with HF_HUB_OFFLINE=1
metric.compute(predictions=scores, references=labels)
"""

from pathlib import Path

__all__ = ["HFR_VERIFICATION"]

HFR_VERIFICATION = str(Path(__file__).resolve().parent / "hfr_verification")
