"""Run a protocol: embed each image once, score every fold, gather metrics, score files and plots."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .identification import cmc, identification_metrics, identification_ranks, probe_gallery_scores
from .protocols import IdentificationProtocol, VerificationProtocol, check_files
from .score_files import Scores
from .verification import DEFAULT_FARS, mean_std, verification_metrics

__all__ = ["EmbeddingCache", "EvaluationResult", "evaluate_protocol", "resolve_images"]


class EmbeddingCache:
    """Embeddings by image key, embedded once per run, optionally kept in an .npz file between runs. The
    file records what produced the embeddings (`fingerprint`); a different model or alignment setting
    starts a fresh cache instead of reusing stale vectors."""

    def __init__(self, path: str | os.PathLike | None = None, fingerprint: str = ""):
        self.path = Path(path) if path else None
        self.fingerprint = fingerprint
        self.vectors: dict[str, np.ndarray] = {}
        if self.path and self.path.is_file():
            with np.load(self.path, allow_pickle=False) as data:
                if str(data["fingerprint"]) == fingerprint:
                    self.vectors = dict(zip(data["keys"].tolist(), data["embeddings"]))

    def missing(self, keys: Sequence[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self.vectors]

    def update(self, keys: Sequence[str], embeddings: np.ndarray) -> None:
        self.vectors.update(zip(keys, embeddings))

    def __getitem__(self, keys: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[k] for k in keys])

    def save(self) -> None:
        if not self.path or not self.vectors:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.tmp.npz")
        keys = list(self.vectors)
        np.savez(
            tmp, keys=np.array(keys), embeddings=np.stack([self.vectors[k] for k in keys]), fingerprint=self.fingerprint
        )
        os.replace(tmp, self.path)


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


@dataclass
class EvaluationResult:
    """The JSON report, plus per fold the score file rows, (genuine, impostor) and the CMC (identification)."""

    report: dict
    scores: dict[str, Scores] = field(default_factory=dict)
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    cmcs: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.report, indent=2) + "\n"

    def table(self) -> str:
        """Per fold and mean ± std: pairs, AUC, EER, TAR@FAR 1e-2 and 1e-3, rank-1 (identification)."""
        ident = self.report["kind"] == "identification"
        head = f"{'fold':>12} {'genuine':>8} {'impostor':>9} {'AUC':>7} {'EER':>7} {'TAR@1e-2':>9} {'TAR@1e-3':>9}"
        lines = [head + (f" {'rank-1':>7}" if ident else "")]
        for fold, entry in self.report["folds"].items():
            v = entry["verification"]
            line = (
                f"{fold:>12} {v['genuine_pairs']:>8} {v['impostor_pairs']:>9} {v['auc']:>7.4f} {v['eer']:>7.4f} "
                f"{v['tar_at_far']['1e-2']:>9.4f} {v['tar_at_far']['1e-3']:>9.4f}"
            )
            lines.append(line + (f" {entry['identification']['rank1']:>7.4f}" if ident else ""))
        if len(self.report["folds"]) > 1:
            s = self.report["summary"]
            pm = lambda k: f"{s[k]['mean']:.4f}±{s[k]['std']:.4f}"  # noqa: E731
            lines.append(f"{'mean±std':>12} AUC {pm('auc')}  EER {pm('eer')}  TAR@1e-3 {pm('tar_at_far_1e-3')}")
            if ident:
                lines[-1] += f"  rank-1 {pm('rank1')}"
        return "\n".join(lines)


def evaluate_protocol(
    protocol: VerificationProtocol | IdentificationProtocol,
    embeddings: Mapping[str, np.ndarray] | EmbeddingCache,
    fars: Sequence[float] = DEFAULT_FARS,
    bootstrap: int = 0,
) -> EvaluationResult:
    """Metrics of every fold of `protocol` from the embeddings of its images (keyed by protocol path)."""
    lookup = embeddings if isinstance(embeddings, EmbeddingCache) else None
    get = (lambda keys: lookup[keys]) if lookup else (lambda keys: np.stack([embeddings[k] for k in keys]))
    result = EvaluationResult(report={"protocol": protocol.name, "kind": protocol.kind, "folds": {}})
    for fold, sub in protocol.split():
        entry = {}
        if isinstance(sub, VerificationProtocol):
            score = _cosine_rows(get(sub.path_a), get(sub.path_b))
            genuine, impostor = score[sub.labels], score[~sub.labels]
            ids_a, ids_b = sub.identities()
            result.scores[fold] = Scores(list(sub.path_b), list(ids_b), list(sub.path_a), list(ids_a), score)
        else:
            gallery, gallery_ids, gallery_modalities = sub.side("gallery")
            probes, probe_ids, probe_modalities = sub.side("probe")
            similarity = _cosine(get(probes), get(gallery))
            genuine, impostor = probe_gallery_scores(similarity, probe_ids, gallery_ids)
            entry["identification"] = identification_metrics(similarity, probe_ids, gallery_ids)
            entry["identification"]["probe_modalities"] = sorted(set(probe_modalities))
            entry["identification"]["gallery_modalities"] = sorted(set(gallery_modalities))
            result.cmcs[fold] = cmc(identification_ranks(similarity, probe_ids, gallery_ids), len(set(gallery_ids)))
            n_p, n_g = similarity.shape
            result.scores[fold] = Scores(
                [p for p in probes for _ in range(n_g)],
                [i for i in probe_ids for _ in range(n_g)],
                list(gallery) * n_p,
                list(gallery_ids) * n_p,
                similarity.ravel(),
            )
        entry["verification"] = verification_metrics(genuine, impostor, fars, bootstrap=bootstrap)
        result.pairs[fold] = (genuine, impostor)
        result.report["folds"][fold] = entry
    folds = list(result.report["folds"].values())
    summary = {k: mean_std(f["verification"][k] for f in folds) for k in ("auc", "eer")}
    for key in folds[0]["verification"]["tar_at_far"]:
        summary[f"tar_at_far_{key}"] = mean_std(f["verification"]["tar_at_far"][key] for f in folds)
    if protocol.kind == "identification":
        for key in ("rank1", "rank5", "rank10"):
            summary[key] = mean_std(f["identification"][key] for f in folds)
    result.report["summary"] = summary
    return result


def resolve_images(protocol, root: str | os.PathLike) -> tuple[list[str], list[Path]]:
    """(keys, files) of the protocol's distinct images; every missing file is named in one error."""
    keys = protocol.paths() if isinstance(protocol, VerificationProtocol) else protocol.unique_paths()
    return keys, check_files(keys, root)
