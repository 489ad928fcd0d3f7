"""Write the evaluation protocols of the shared face sets (AT&T, Yale, deepface, PUJ-T360) as CSV files.

    python scripts/make_protocols.py ../shared/assets protocols/

- att.csv: identification, 40 people; fold k uses image k of each person as the gallery (one image per
  person) and the other nine as probes; 10 folds.
- yale.csv: identification, 15 people; fold c uses condition c (normal, glasses, ...) as the gallery and
  the person's other images as probes; 10 folds (centerlight, missing for
  subject01, is only ever a probe).
- deepface.csv: verification, the 300 labelled pairs of faces/deepface/master.csv.
- puj_t360.csv: thermal→thermal identification, gallery GalleryPristine, probes ProbePristine.
- puj_<camera>_verification.csv, puj_<camera>_identification.csv, puj_cross_identification.csv (PUJ-FONE probes vs
  PUJ-T360 gallery), puj_cross_verification.csv: the real-thermal measures of hfr_hf.evaluation.real_thermal, on the
  PUJ people kept for measuring (hfr_hf/data/puj_split.json); evaluate them with --no-align.
Paths are relative to the assets folder, so evaluate with `--root ../shared/assets`.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from hfr_hf.evaluation import write_identification_protocol, write_verification_protocol
from hfr_hf.evaluation.real_thermal import write_puj_protocols


def att(assets: Path) -> list[tuple]:
    people = sorted((assets / "faces/att").glob("s*"), key=lambda p: int(p.name[1:]))
    return [
        (f"faces/att/{person.name}/{i}.pgm", person.name, "visible", "gallery" if i == k else "probe", str(k))
        for k in range(1, 11)
        for person in people
        for i in range(1, 11)
    ]


def yale(assets: Path) -> list[tuple]:
    files = sorted(p for p in (assets / "faces/yale").iterdir() if p.name.startswith("subject"))
    people = {p.stem for p in files}
    conditions = sorted(  # gallery conditions every person has (subject01 lacks centerlight)
        c for c in {p.suffix[1:] for p in files} if sum(p.suffix[1:] == c for p in files) == len(people)
    )
    return [
        (f"faces/yale/{p.name}", p.stem, "visible", "gallery" if p.suffix[1:] == c else "probe", c)
        for c in conditions
        for p in files
    ]


def deepface(assets: Path) -> list[tuple]:
    with open(assets / "faces/deepface/master.csv", newline="") as handle:
        return [
            (f"faces/deepface/{r['file_x']}", f"faces/deepface/{r['file_y']}", r["Decision"].strip() == "Yes")
            for r in csv.DictReader(handle)
        ]


def puj_t360(assets: Path) -> list[tuple]:
    rows = []
    for folder, split in (("GalleryPristine", "gallery"), ("ProbePristine", "probe")):
        for p in sorted((assets / "thermal/puj_t360" / folder).glob("*.tiff")):
            rows.append((f"thermal/puj_t360/{folder}/{p.name}", p.name.split("_")[0], "thermal", split))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assets", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    for name, rows in (("att", att(args.assets)), ("yale", yale(args.assets)), ("puj_t360", puj_t360(args.assets))):
        print(write_identification_protocol(args.output / f"{name}.csv", rows), len(rows), "rows")
    for path in write_puj_protocols(args.assets / "thermal", args.output, relative_to=args.assets):
        print(path)
    pairs = deepface(args.assets)
    print(write_verification_protocol(args.output / "deepface.csv", pairs), len(pairs), "pairs")


if __name__ == "__main__":
    main()
