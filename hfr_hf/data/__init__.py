"""Paired cross-spectral data on `datasets`: loaders, identity-disjoint splits, pseudo-spectral renderers,
augmentation, and the pseudo-thermal development protocol.

- `renderers`: `ThermalRenderer`, `NIRRenderer` (aligned visible crop → synthetic LWIR / NIR look).
- `pairs`: `load_pairs_csv`, `pairs_from_folders`, `pseudo_pairs_from_folder`, `split_identities`,
  `check_disjoint_splits`.
- `augment`: `Augment` (one image), `PairTransform` (render + augment rows in `set_transform`).
- `protocol`: `build_pseudo_thermal_protocol` (AT&T + Yale → training pairs and evaluation CSVs).
- `puj`: the real LWIR faces of PUJ-T360 / PUJ-FONE (`puj_images`) and the project's one identity split of their
  40 people (`load_puj_split`, `puj_split.json`).
- `unpaired`: real target-spectrum images without visible twins, as identity-balanced batches (`UnpairedTargets`).
"""

from .augment import Augment, PairTransform
from .pairs import (
    BadRow,
    add_row_seeds,
    assign_splits,
    check_disjoint_splits,
    load_pairs_csv,
    pair_features,
    pairs_from_folders,
    pseudo_pairs_from_folder,
    split_identities,
)
from .protocol import PseudoThermalProtocol, build_pseudo_thermal_protocol
from .renderers import (
    PALETTES,
    NIRRenderer,
    ThermalRenderer,
    apply_palette,
    face_regions,
    get_renderer,
    glasses_score,
)

__all__ = [
    "PALETTES",
    "Augment",
    "BadRow",
    "NIRRenderer",
    "PairTransform",
    "PseudoThermalProtocol",
    "ThermalRenderer",
    "add_row_seeds",
    "apply_palette",
    "assign_splits",
    "build_pseudo_thermal_protocol",
    "check_disjoint_splits",
    "face_regions",
    "get_renderer",
    "glasses_score",
    "load_pairs_csv",
    "pair_features",
    "pairs_from_folders",
    "pseudo_pairs_from_folder",
    "split_identities",
]
