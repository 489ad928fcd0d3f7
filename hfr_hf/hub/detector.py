"""The cross-spectral detector's Hub repository: its two files, its training report and a card that names the
training data and the licences (MTCNN's weights are MIT; the photos the renders came from carry their own terms)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..alignment.detector import CONFIG_NAME, WEIGHTS_NAME, resolve_detector_folder
from .push import PushResult, _build_and_push, validate_repo_ids
from .repos import PublishError

__all__ = ["build_detector_repo", "detector_card", "push_detector"]

# Terms of the photo sets the project's assets hold, matched by folder name in the training config.
_DATA_TERMS = {
    "att": "AT&T (ORL) faces: research use; credit AT&T Laboratories Cambridge / Olivetti Research Laboratory",
    "yale": "Yale faces: research use; cite the Yale Face Database",
    "deepface": "deepface test photos: third-party photos, internal tests only; weights trained on them must not "
    "be published",
}


def _training_folders(config: dict) -> list[str]:
    """The photo folders of a detector's training and of every training that continued it (`init_detector`)."""
    trainings = [config, *config.get("further_training", [])]
    return sorted({f for t in trainings for f in t.get("training_data", {}).get("folders", [])})


def detector_card(config: dict, report: dict | None, repo_id: str) -> str:
    """README.md of a detector repository (front matter + what it is, how it was trained, on what, terms)."""
    data = config.get("training_data", {})
    folders = _training_folders(config)
    terms = [text for key, text in _DATA_TERMS.items() if any(Path(f).name == key for f in folders)]
    networks = ", ".join(config.get("networks", []))
    real = data.get("real_thermal")
    trained_on = (
        "photos, labels from the visible MTCNN on the same frames; and real LWIR images of "
        f"{len(real['people'])} PUJ people ({real['faces_labelled']} faces), pseudo-labelled by the detector "
        f"{real['labeller']} (self-training)."
        if real
        else "photos, labels from the visible MTCNN on the same frames. No real thermal or NIR image was used."
    )
    lines = [
        "---",
        "license: other",
        "library_name: hfr-hf",
        "tags: [face-detection, thermal, near-infrared, mtcnn, cross-spectral]",
        "---",
        "",
        f"# {repo_id}: cross-spectral MTCNN (visible, NIR, LWIR thermal)",
        "",
        "Five-landmark face detector for thermal and NIR images: MTCNN's cascade (Zhang et al., 2016) with "
        f"{networks} fine-tuned by `hfr-hf train-detector` on pseudo-thermal and pseudo-NIR renders of visible "
        + trained_on,
        *(
            [
                "",
                "The landmarks of thermal faces come from a landmark network (O-Net's shape, trained from this "
                "O-Net on white-hot renders only), which reads each face O-Net found in a white-hot view of the "
                'image (false colour mapped back to grey, black-hot inverted); with `spectrum="nir"` O-Net\'s '
                "landmarks are used.",
            ]
            if "lnet" in config.get("networks", [])
            else []
        ),
        "",
        "```python",
        "from hfr_hf.alignment import FaceAligner",
        f'aligner = FaceAligner(spectrum="thermal", detector_weights="{repo_id}")',
        "```",
        "",
        "## Training data",
        "",
        f"- photos labelled: {data.get('photos_labelled', '?')} (skipped: {data.get('photos_skipped', '?')}), "
        f"from {', '.join(Path(f).name for f in folders) or '?'}",
        f"- kept out: {', '.join(config.get('exclude', [])) or 'nothing'}; held-out identities for validation: "
        f"{len(data.get('held_out_identities', []))}",
        f"- spectra of the renders: {json.dumps(config.get('spectra', {}))}",
        *(
            [f"- real LWIR (PUJ split's train people only): {', '.join(real['people'])}, from {real['root']}"]
            if real
            else []
        ),
        *([f"- face-free photos: {data['face_free_photos']}"] if data.get("face_free_photos") else []),
        "",
        "## Licences",
        "",
        "- MTCNN starting weights: MIT (the `mtcnn` PyPI package by Iván de Paz Centeno).",
        *[f"- {text}" for text in terms],
        *(
            [
                "- PUJ-T360 / PUJ-FONE thermal faces: GPL-3.0 repository data; cite Rodríguez Pulecio, Benítez "
                'Restrepo, Bovik, "Making Infrared Face Recognition Robust Against Image Quality Degradations"'
            ]
            if real
            else []
        ),
        *(
            ["- face-free photos (scikit-image's data): their own terms, public domain or CC0 for most"]
            if data.get("face_free_photos")
            else []
        ),
        "- Any other photos: the terms of whoever supplied them.",
    ]
    if report:
        lines += ["", "## Training report", ""]
        for name, network in report.get("networks", {}).items():
            before, after = network["held_out_before"]["accuracy"], network["held_out_after"]["accuracy"]
            lines.append(f"- {name}: held-out renders, face / not-face accuracy {before:.3f} → {after:.3f}")
    return "\n".join(lines) + "\n"


def build_detector_repo(detector_dir: str | os.PathLike, folder: str | os.PathLike, repo_id: str) -> list[str]:
    """Copy the detector's files (and report.json when there) into `folder` and write its card; returns the names.

    Refuses a detector trained on photos whose terms forbid publishing derived weights (the deepface set)."""
    source = resolve_detector_folder(detector_dir)
    config = json.loads((source / CONFIG_NAME).read_text())
    if any(Path(f).name == "deepface" for f in _training_folders(config)):
        raise PublishError(
            "This detector was trained on the deepface photos, which are for internal tests only; retrain it "
            "without them (leave faces/deepface out of `hfr-hf train-detector`) before publishing."
        )
    folder = Path(folder)
    names = [CONFIG_NAME, WEIGHTS_NAME]
    for name in names:
        shutil.copy2(source / name, folder / name)
    report = None
    if (source / "report.json").is_file():
        report = json.loads((source / "report.json").read_text())
        shutil.copy2(source / "report.json", folder / "report.json")
        names.append("report.json")
    (folder / "README.md").write_text(detector_card(config, report, repo_id))
    return sorted([*names, "README.md"])


def push_detector(
    repo_id: str,
    detector_dir: str | os.PathLike,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    dry_run: str | os.PathLike | None = None,
) -> PushResult:
    """Publish a detector folder from `hfr-hf train-detector` to `repo_id` (or write it to `dry_run`)."""
    validate_repo_ids(repo_id=repo_id)
    return _build_and_push(
        lambda folder: build_detector_repo(detector_dir, folder, repo_id),
        repo_id,
        "model",
        private=private,
        revision=revision,
        token=token,
        commit_message=commit_message or "Upload cross-spectral face detector with hfr-hf",
        dry_run=dry_run,
    )
