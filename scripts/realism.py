"""Renderer realism: how well the frozen EdgeFace tells real LWIR faces from rendered ones, per renderer setting.

    python scripts/realism.py [--model runs/edgeface-xxs] [--crops runs/xedgeface/protocol/aligned]
        [--thermal ../shared/assets/thermal] [--renders 240] [--settings today white_hot ...] [--detector DIR]
        [--seeds 3]

Real: every PUJ-T360 and PUJ-FONE image of the split's training people (never the measuring ones), resized as the
measures read them, or with `--detector` (`hfr-hf train-detector`) aligned to the ArcFace template as the rendered
crops are (the images where it finds no face are left out). The AUC's folds keep each person on one side (a
classifier must not tell the sets apart by who is in them). Rendered: `--renders` aligned AT&T + Yale crops (a seeded choice) through `ThermalRenderer` with
each setting below, seeded (`--seeds N`: N render seeds; the AUC's fold-to-fold std and the Fréchet distance
are then averaged over them, the seeds' spread printed beside). First it scores the two real cameras against each
other (the same people: the floor no renderer can be expected to beat), and for each setting the first seed's
renders against each camera alone at that camera's sample size (the Fréchet distance depends on it). For each setting it prints the cross-validated AUC of a logistic regression on the
frozen embeddings (0.5 = indistinguishable) and the Fréchet distance (`hfr_hf.evaluation.realism`), and writes
`<output>/realism.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("HFR_HF_ASSETS", REPO.parent / "shared" / "assets"))

# name → ThermalRenderer keyword arguments, over the scene gain (`skin_level=None`, the default when these were
# measured); "today" is the renderer before the realism score existed, "skin level" the renderer's default now.
SCENE_GAIN = {"skin_level": None}
SETTINGS = {
    "today": {},
    "white_hot": {"palettes": "white_hot"},
    "white_hot, cold background": {"palettes": "white_hot", "background": (0.0, 0.05)},
    "white_hot, segmented": {"palettes": "white_hot", "segmented": 1.0},
    "white_hot, segmented, blurrier": {"palettes": "white_hot", "segmented": 1.0, "blur": (0.8, 1.6)},
    "white_hot, segmented, no fine structure": {"palettes": "white_hot", "segmented": 1.0, "features": (0.0, 0.05)},
    "white_hot, segmented, PUJ framing": {"palettes": "white_hot", "segmented": 1.0, "framing": (0.58, 0.68)},
    "PUJ framing": {"framing": (0.58, 0.68)},
    "white_hot, PUJ framing": {"palettes": "white_hot", "framing": (0.58, 0.68)},
    "mixed: half segmented, white_hot 0.8": {
        "palettes": {"white_hot": 0.8, "iron": 0.1, "inferno": 0.05, "black_hot": 0.05},
        "segmented": 0.5,
    },
    # the look of the aligned real faces: skin gained near white, the face filling the crop as the detector aligns it
    "skin level": {"skin_level": (0.84, 0.9)},
    "detector scale": {"scale": (1.2, 1.3)},
    "skin level, detector scale": {"skin_level": (0.84, 0.9), "scale": (1.2, 1.3)},
    "white_hot, segmented, skin level, detector scale": {
        "palettes": "white_hot",
        "segmented": 1.0,
        "skin_level": (0.84, 0.9),
        "scale": (1.2, 1.3),
    },
}


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from hfr_hf.data import ThermalRenderer
    from hfr_hf.data.puj import load_puj_split, puj_images
    from hfr_hf.evaluation.realism import realism_score
    from hfr_hf.inference import embed_images, load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "runs" / "edgeface-xxs"))
    parser.add_argument("--crops", type=Path, default=REPO / "runs" / "xedgeface" / "protocol" / "aligned")
    parser.add_argument("--thermal", type=Path, default=ASSETS / "thermal")
    parser.add_argument("--renders", type=int, default=240)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "realism")
    parser.add_argument("--detector", help="cross-spectral detector: align the real faces instead of resizing them")
    parser.add_argument("--seeds", type=int, default=1, help="render seeds per setting (a gain must beat their spread)")
    args = parser.parse_args(argv)

    model, processor = load_model(args.model)
    model.eval()
    train = {p for p, s in load_puj_split().items() if s == "train"}
    by_camera = puj_images(args.thermal, train)
    real_files = [f for people in by_camera.values() for fs in people.values() for f in fs]
    real_ids = [f.name.split("_")[0] for f in real_files]
    real_cameras = [camera for camera, people in by_camera.items() for fs in people.values() for _ in fs]
    if args.detector:
        from hfr_hf.alignment import FaceAligner

        aligner = FaceAligner(spectrum="thermal", detector_weights=args.detector)
        found = aligner.detect_and_align([np.asarray(Image.open(f)) for f in real_files])
        kept = [i for i, r in enumerate(found) if not isinstance(r, Exception)]
        real_inputs, real_ids = [found[i][0].crop for i in kept], [real_ids[i] for i in kept]
        real_cameras = [real_cameras[i] for i in kept]
    else:
        real_inputs = real_files
    real = embed_images(model, processor, real_inputs, progress=False, align="never")
    # the floor a renderer is judged against: the same people seen by the two real cameras
    t360, fone = (np.array([c == camera for c in real_cameras]) for camera in ("puj_t360", "puj_fone"))
    people = np.array(real_ids)
    cameras = realism_score(
        real[t360], real[fone], real_ids=list(people[t360]), rendered_ids=list(people[fone]), same_people=True
    )
    crops = sorted(args.crops.glob("*/*.png"))
    if not crops:
        raise SystemExit(f"No aligned crops under {args.crops}; run the experiment (make run) first.")
    rng = np.random.default_rng(0)
    chosen = [crops[i] for i in sorted(rng.choice(len(crops), min(args.renders, len(crops)), replace=False))]
    sources = [np.asarray(Image.open(c).convert("RGB")) for c in chosen]
    results = {}
    how = f"aligned by {args.detector}, of {len(real_files)}" if args.detector else "resized"
    print(f"real: {len(real)} PUJ images ({how}) of {len(train)} training people; rendered: {len(sources)} crops")
    print(
        f"two real cameras, same people (PUJ-T360 {t360.sum()} vs PUJ-FONE {fone.sum()} images): "
        f"AUC {cameras['auc']:.4f} ± {cameras['auc_std']:.4f}, Fréchet distance {cameras['frechet']:.3f}"
    )
    results["real PUJ-T360 vs real PUJ-FONE"] = {**cameras, "settings": None}
    print(
        f"{args.seeds} render seed(s)\n| setting | realism AUC (± std over 5 folds) | Fréchet distance |\n|---|---|---|"
    )
    for name in args.settings:
        started = time.perf_counter()
        renderer = ThermalRenderer(**{**SCENE_GAIN, **SETTINGS[name]})
        scores = []
        for seed in range(args.seeds):  # seed 0 is the one a single-seed run has always used
            renders = [renderer(s, np.random.default_rng([seed, n])) for n, s in enumerate(sources)]
            rendered = embed_images(model, processor, renders, progress=False, align="never")
            ids = [c.parent.name for c in chosen]
            scores.append(realism_score(real, rendered, real_ids=real_ids, rendered_ids=ids))
            if seed == 0:
                # against each camera alone, at that camera's sample size: comparable with the two cameras' score
                # (the Fréchet distance grows as samples shrink); five seeded draws of the renders
                per_camera = {}
                for camera, mask in (("puj_t360", t360), ("puj_fone", fone)):
                    draws = [
                        np.random.default_rng(k).choice(len(rendered), mask.sum(), replace=False) for k in range(5)
                    ]
                    scored = [
                        realism_score(
                            real[mask], rendered[d], real_ids=list(people[mask]), rendered_ids=[ids[i] for i in d]
                        )
                        for d in draws
                    ]
                    per_camera[camera] = {
                        "auc": float(np.mean([x["auc"] for x in scored])),
                        "frechet": float(np.mean([x["frechet"] for x in scored])),
                        "frechet_std": float(np.std([x["frechet"] for x in scored])),
                        "real": int(mask.sum()),
                    }
        r = {key: float(np.mean([s[key] for s in scores])) for key in ("auc", "auc_std", "frechet")}
        r["auc_seeds"] = [s["auc"] for s in scores]
        r["frechet_seeds"] = [s["frechet"] for s in scores]
        results[name] = {
            **r,
            "real": len(real),
            "rendered": len(sources),
            "settings": {**SCENE_GAIN, **SETTINGS[name]},
            "per_camera": per_camera,
        }
        spread = (
            f" (seeds: AUC {' '.join(f'{a:.4f}' for a in r['auc_seeds'])}, Fréchet ± {np.std(r['frechet_seeds']):.3f})"
            if args.seeds > 1
            else ""
        )
        print(
            f"| {name} | {r['auc']:.4f} ± {r['auc_std']:.4f} | {r['frechet']:.3f} |{spread}  "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        print(
            "    against one camera at its size: "
            + "; ".join(
                f"{camera} AUC {c['auc']:.4f}, Fréchet {c['frechet']:.3f} ± {c['frechet_std']:.3f}"
                for camera, c in per_camera.items()
            ),
            flush=True,
        )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "realism.json").write_text(json.dumps(results, indent=2, default=list) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
