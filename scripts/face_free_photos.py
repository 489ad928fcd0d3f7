"""Write the face-free photos bundled with scikit-image into a folder, for `hfr-hf train-detector --negatives`.

Natural textures (bricks, gravel, grass, coffee, coins, a horse, a rocket, a motorcycle, text, the Moon, the Hubble
deep field, micrographs, ...) that the detector's synthetic face-free scenes miss. The photos of people and animals
(astronaut, camera, chelsea) are left out. scikit-image's images are under its own licences (public domain or
CC0 for most; see skimage/data/README.txt). Run from the repository root:

    pip install 'hfr-hf[detector]' && python scripts/face_free_photos.py runs/face_free
"""

from __future__ import annotations

import argparse
from pathlib import Path

FACE_FREE = (
    "brick",
    "cell",
    "chessboard_RGB",
    "clock_motion",
    "coffee",
    "coins",
    "color",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "ihc",
    "logo",
    "microaneurysms",
    "moon",
    "motorcycle_left",
    "page",
    "retina",
    "rocket",
    "text",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="folder to write the PNGs into")
    args = parser.parse_args()
    try:
        import skimage
    except ImportError:
        raise SystemExit("scikit-image is needed: pip install 'hfr-hf[detector]' (or scikit-image)") from None
    from PIL import Image

    data = Path(skimage.__file__).parent / "data"
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    written = 0
    for name in FACE_FREE:
        source = next(iter(sorted(data.glob(name + ".*"))), None)
        if source is None:
            print(f"skipped {name}: not in this scikit-image")
            continue
        Image.open(source).convert("RGB").save(output / f"{name}.png")
        written += 1
    print(f"Wrote {written} face-free photos to {output}")


if __name__ == "__main__":
    main()
