"""Model cards for converted EdgeFace folders (pushing to the Hub comes with the publishing work)."""

from __future__ import annotations

from huggingface_hub import ModelCard, ModelCardData

from .convert import OFFICIAL_HUB_FILES

__all__ = ["CITATIONS", "converted_model_card"]

CITATIONS = """```bibtex
@article{george2024edgeface,
  title   = {EdgeFace: Efficient Face Recognition Model for Edge Devices},
  author  = {George, Anjith and Ecabert, Christophe and Otroshi Shahreza, Hatef and Kotwal, Ketan and Marcel, S{\\'e}bastien},
  journal = {IEEE Transactions on Biometrics, Behavior, and Identity Science},
  year    = {2024}
}
@article{george2026lightweight,
  title   = {Lightweight Cross-Spectral Face Recognition via Contrastive Alignment and Distillation},
  author  = {George, Anjith and Marcel, S{\\'e}bastien},
  journal = {arXiv preprint arXiv:2605.04769},
  year    = {2026}
}
@article{george2025xedgeface,
  title   = {xEdgeFace: Efficient Cross-Spectral Face Recognition for Edge Devices},
  author  = {George, Anjith and Marcel, S{\\'e}bastien},
  journal = {arXiv preprint arXiv:2504.19646},
  year    = {2025}
}
```"""

_CONVERTED_BODY = """
# EdgeFace-{variant_upper} (Hugging Face format)

EdgeFace-{variant_upper} ({num_parameters:,} parameters), converted with
[hfr-hf](https://pypi.org/project/hfr-hf/) from the official checkpoint `{source}`.
The network is unchanged: it maps an aligned 112×112 RGB face in [-1, 1] to a 512-d
embedding, compared by cosine similarity.

```python
from transformers import AutoImageProcessor, AutoModel

model = AutoModel.from_pretrained("path/or/repo", trust_remote_code=True).eval()
processor = AutoImageProcessor.from_pretrained("path/or/repo", trust_remote_code=True)
embeddings = model(**processor(images, return_tensors="pt")).embeddings
```

## Licence and attribution

The weights are those of EdgeFace by the Idiap Research Institute, released under
**CC BY-NC-SA 4.0** (non-commercial, share-alike, attribution); this converted copy, and any
model fine-tuned from it, carries the same licence. Attribution: George et al., "EdgeFace:
Efficient Face Recognition Model for Edge Devices", IEEE T-BIOM 2024.

## Citation

{citations}
"""


def converted_model_card(variant: str, source: str, num_parameters: int) -> str:
    """README.md of a converted model folder: front matter (licence, base model, tags) and a short body."""
    base_model = OFFICIAL_HUB_FILES.get(variant, (None,))[0]
    data = ModelCardData(
        license="cc-by-nc-sa-4.0",
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        base_model=base_model,
        tags=["face-recognition", "edgeface", "hfr-hf"],
    )
    body = _CONVERTED_BODY.format(
        variant_upper=variant.upper(), num_parameters=num_parameters, source=source, citations=CITATIONS
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))
