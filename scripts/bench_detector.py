"""Measures of a cross-spectral detector (`hfr-hf train-detector`) against MTCNN, on the shared assets.

* Real LWIR (PUJ-T360, PUJ-FONE: all images, and per PUJ split: a detector trained with `--real-thermal` has seen
  the `train` people's images): faces found with five landmarks, landmark plausibility (each point
  within `--tolerance` face-box units of its mean over the set, anatomical order), and thermal→thermal
  identification (GalleryPristine vs ProbePristine, per camera, EdgeFace-XXS from `--model`; all people, and the
  measuring (`test`) people of the PUJ split alone): the detector's
  alignment against the registered crops simply resized to 112×112. A probe or gallery image where no face is
  found is resized instead, so both columns use every image.
* Renders of held-out identities (AT&T s31-s40, Yale subjects 13-15: kept out of the README's training command):
  landmark error over the inter-ocular distance against the visible detections, thermal and NIR, each aligned
  with its spectrum (`spectrum="thermal"` reads landmarks with the landmark network where the detector has one).
* Images without faces: false detections per image, on two face-free sets of 60 (seeds 1234 and 4321), and, with
  `spectrum="thermal"`, on `--face-free-sets` more sets of 60 (seeds 0, 1, …): a rate over 1,200 images by
  default, where two sets can only show 0 or a few.
* The face check of crops taken as aligned (`hfr-hf verify`, the Space; `FaceAligner.check_crop`), per spectrum
  setting (visible: MTCNN's O-Net; thermal: the detector's; auto): the share of crops that pass, on the
  detector-aligned PUJ crops, on the PUJ images simply resized to 112×112, on the visible AT&T/Yale held-out
  photos aligned by MTCNN, and on the images without faces resized to 112×112 (these must not pass).

Writes a JSON report to `--output` and prints Markdown tables. Run from the repository root:

    python scripts/bench_detector.py --detector runs/detector --model runs/xxs [--assets ../shared/assets]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hfr_hf.alignment import FaceAligner
from hfr_hf.alignment.detector_training import find_images, label_faces
from hfr_hf.data.puj import load_puj_split
from hfr_hf.evaluation import eer, identification_metrics, probe_gallery_scores
from hfr_hf.evaluation.detection import (
    face_check_rates,
    face_region_box,
    false_detections,
    landmark_plausibility,
    non_face_images,
    render_landmark_errors,
)

HELD_OUT = [f"*/att/s{i}/*" for i in range(31, 41)] + [f"*/yale/subject{i}*" for i in (13, 14, 15)]


def real_thermal(assets: Path, aligner: FaceAligner, tolerance: float) -> tuple[dict, dict]:
    files = sorted(Path(assets, "thermal").glob("puj_*/*/*.tiff"))
    images = [np.asarray(Image.open(f)) for f in files]
    results = aligner.detect_and_align(images)
    found = [not isinstance(r, Exception) for r in results]
    report: dict = {"images": len(files), "found": int(sum(found))}
    for camera in ("puj_t360", "puj_fone"):
        mine = [i for i, f in enumerate(files) if camera in str(f)]
        report[camera] = {"images": len(mine), "found": int(sum(found[i] for i in mine))}
    # a detector self-trained on the PUJ train people (--real-thermal) has seen their images: each split apart
    split = load_puj_split()
    for part in ("train", "validation", "test"):
        mine = [i for i, f in enumerate(files) if split.get(f.name.split("_")[0]) == part]
        report[f"people_{part}"] = {"images": len(mine), "found": int(sum(found[i] for i in mine))}
    points = [r[0].landmarks for r in results if not isinstance(r, Exception)]
    boxes = [face_region_box(im) for im, r in zip(images, results) if not isinstance(r, Exception)]
    plausible = (
        landmark_plausibility(points, boxes, tolerance) if points else {"rate": 0.0, "deviation": np.zeros((0, 5))}
    )
    report["plausible"] = int(np.sum(plausible.get("plausible", [])))
    report["plausible_rate_of_found"] = plausible["rate"]
    report["deviation_p95"] = np.percentile(plausible["deviation"], 95, axis=0).round(3).tolist() if points else []
    report["mean_landmarks_in_face_box"] = np.asarray(plausible.get("mean", [])).round(3).tolist()
    return report, {str(f): r for f, r in zip(files, results)}


def identification(assets: Path, model_folder: str, detections: dict, people: set | None = None) -> dict:
    """Per camera, GalleryPristine vs ProbePristine (of `people` only, when given): rank-1 and EER."""
    from hfr_hf.inference import embed_images, load_model

    model, processor = load_model(model_folder)
    out = {}
    mine = lambda files: [f for f in files if people is None or f.name.split("_")[0] in people]  # noqa: E731
    for camera in ("puj_t360", "puj_fone"):
        gallery = mine(sorted(Path(assets, "thermal", camera, "GalleryPristine").glob("*.tiff")))
        probes = mine(sorted(Path(assets, "thermal", camera, "ProbePristine").glob("*.tiff")))
        ids = lambda files: [f.name.split("_")[0] for f in files]  # noqa: E731
        rows = {}
        for name in ("resized", "detector"):

            def crops(files, name=name):
                result = []
                for f in files:
                    image = np.asarray(Image.open(f).convert("RGB"))
                    found = detections[str(f)]
                    if name == "detector" and not isinstance(found, Exception):
                        result.append(found[0].crop)
                    else:
                        result.append(np.asarray(Image.fromarray(image).resize((112, 112), Image.Resampling.BILINEAR)))
                return result

            g = embed_images(model, processor, crops(gallery), progress=False)
            p = embed_images(model, processor, crops(probes), progress=False)
            similarity = p @ g.T  # embeddings are L2-normalised: cosine
            metrics = identification_metrics(similarity, ids(probes), ids(gallery))
            genuine, impostor = probe_gallery_scores(similarity, ids(probes), ids(gallery))
            rows[name] = {"rank1": metrics["rank1"], "eer": eer(genuine, impostor)}
        out[camera] = rows
    return out


def faces_by_kind(counts, kinds) -> dict[str, int]:
    """Faces reported per kind of face-free image."""
    return {k: int(sum(c for c, kk in zip(counts, kinds) if kk == k)) for k in sorted(set(kinds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", required=True, help="detector folder from hfr-hf train-detector")
    parser.add_argument("--model", help="EdgeFace model folder for the identification check (skipped without)")
    parser.add_argument("--assets", default=os.environ.get("HFR_HF_ASSETS", "../shared/assets"))
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--face-free-sets", type=int, default=20, help="extra face-free sets of 60 (seeds 0, 1, ...)")
    parser.add_argument("--output", default="runs/bench_detector.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    assets = Path(args.assets)
    report: dict = {}

    detections_by_spectrum = {}
    for spectrum in ("visible", "thermal"):
        aligner = FaceAligner(spectrum=spectrum, detector_weights=args.detector)
        report[f"puj_{spectrum}"], detections = real_thermal(assets, aligner, args.tolerance)
        detections_by_spectrum[spectrum] = detections
        if args.model:
            report[f"identification_{spectrum}"] = identification(assets, args.model, detections)
    if args.model:  # the measuring people only: what no detector trained with --real-thermal has seen
        measuring = {p for p, s in load_puj_split().items() if s == "test"}
        report["identification_thermal_measuring_people"] = identification(
            assets, args.model, detections_by_spectrum["thermal"], measuring
        )

    faces_root = assets / "faces"
    held = [
        p
        for p in find_images([faces_root / "att", faces_root / "yale"])
        if any(fnmatch.fnmatch(str(p), pattern) for pattern in HELD_OUT)
    ]
    thermal = FaceAligner(spectrum="thermal", detector_weights=args.detector)
    faces, _ = label_faces(held, thermal.detector)
    visible_faces = [r[0] for r in FaceAligner().detect_and_align(held) if not isinstance(r, Exception)]
    report["held_out_photos"] = len(faces)
    # each render as its spectrum's user aligns it: thermal landmarks from the landmark network where the detector
    # has one, NIR (and visible renders, the cross-spectral detector on visible faces) from O-Net
    nir = FaceAligner(spectrum="nir", detector_weights=args.detector)
    for spectrum, aligner in (("thermal", thermal), ("nir", nir), ("visible", nir)):
        errors = render_landmark_errors(faces, aligner, spectrum, renders=2, seed=7)
        errors.pop("nme")
        report[f"renders_{spectrum}"] = errors

    images, kinds = non_face_images(40)
    second, second_kinds = non_face_images(40, seed=4321)  # a second face-free set, as the README reports
    for spectrum in ("visible", "thermal"):
        aligner = FaceAligner(select="all", spectrum=spectrum, detector_weights=args.detector)
        for key, (ims, kk_) in {"": (images, kinds), "_second": (second, second_kinds)}.items():
            result = false_detections(aligner, ims)
            result["by_kind"] = faces_by_kind(result.pop("counts"), kk_)
            report[f"non_faces_{spectrum}{key}"] = result

    aligner = FaceAligner(select="all", spectrum="thermal", detector_weights=args.detector)
    counts, kinds = [], []
    for seed in range(args.face_free_sets):
        ims, kk_ = non_face_images(40, seed=seed)
        counts.extend(false_detections(aligner, ims)["counts"])
        kinds.extend(kk_)
    report["non_faces_thermal_wide"] = {
        "sets": args.face_free_sets,
        "images": len(counts),
        "faces": int(sum(counts)),
        "by_kind": faces_by_kind(counts, kinds),
    }

    resize = lambda image: np.asarray(Image.fromarray(image).convert("RGB").resize((112, 112)))  # noqa: E731
    puj = detections_by_spectrum["thermal"]
    crop_sets = {
        "puj_detector_aligned": [r[0].crop for r in puj.values() if not isinstance(r, Exception)],
        "puj_resized": [resize(np.asarray(Image.open(f))) for f in puj],
        "visible_aligned": [face.crop for face in visible_faces],
        "non_faces_resized": [resize(image) for image in images],
    }
    for spectrum in ("visible", "thermal", "auto"):
        aligner = FaceAligner(spectrum=spectrum, detector_weights=args.detector)
        report[f"face_check_{spectrum}"] = {name: face_check_rates(aligner, crops) for name, crops in crop_sets.items()}

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
