"""Publishing to the Hugging Face Hub: model cards, and the model, adapter, merged-model and Space repositories.

- `cards`: card metadata (licence, base model, tags, model-index) and bodies from the templates in
  `hfr_hf/model_cards/`;
- `reports`: evaluation reports (`hfr-hf experiment`, `hfr-hf evaluate`) → results tables and `EvalResult`s;
- `cost`: parameters and FLOPs per variant, counted;
- `repos`: a repository's files, built and checked in a local folder;
- `push`: `HfApi` pushes of those folders, or a dry run that only writes them.

PEFT is needed only for adapter and merged repositories and is imported when one is built.
"""

from .cards import CITATIONS, AdapterDetails, converted_model_card, model_card, variant_label
from .cost import ModelCost, model_cost, variant_costs
from .push import HubError, PushResult, push_model, push_space, validate_repo_ids
from .reports import EvaluationReport, ReportError, load_report
from .repos import PublishError, build_model_repo, build_space_repo, check_model_folder

__all__ = [
    "CITATIONS",
    "AdapterDetails",
    "EvaluationReport",
    "HubError",
    "ModelCost",
    "PublishError",
    "PushResult",
    "ReportError",
    "build_model_repo",
    "build_space_repo",
    "check_model_folder",
    "converted_model_card",
    "load_report",
    "model_card",
    "model_cost",
    "push_model",
    "push_space",
    "validate_repo_ids",
    "variant_costs",
    "variant_label",
]
