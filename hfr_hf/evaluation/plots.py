"""ROC (log-FAR axis), DET (normal-deviate axes), CMC and open-set DIR–FPIR plots as PNG, several systems per figure.

Matplotlib runs on the Agg backend (no display needed); figures are closed after saving.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy.stats import norm

from .verification import roc

__all__ = ["plot_cmc", "plot_det", "plot_dir", "plot_roc"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def plot_roc(systems: Mapping[str, tuple], path: str | os.PathLike, title: str = "ROC") -> Path:
    """TAR against FAR (log scale) for each `name -> (genuine, impostor)`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    lowest = 1.0
    for name, (genuine, impostor) in systems.items():
        far, tar, _ = roc(genuine, impostor)
        floor = 1.0 / len(impostor)
        lowest = min(lowest, floor)
        ax.step(np.maximum(far, floor / 10), tar, where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlim(lowest / 2, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("False accept rate (FAR)")
    ax.set_ylabel("True accept rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_det(systems: Mapping[str, tuple], path: str | os.PathLike, title: str = "DET") -> Path:
    """FRR against FAR on normal-deviate axes for each `name -> (genuine, impostor)`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    eps = 1e-5
    for name, (genuine, impostor) in systems.items():
        far, tar, _ = roc(genuine, impostor)
        ax.plot(norm.ppf(np.clip(far, eps, 1 - eps)), norm.ppf(np.clip(1 - tar, eps, 1 - eps)), label=name)
    ticks = np.array([1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5, 0.8, 0.95])
    labels = [f"{100 * t:g}" for t in ticks]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(norm.ppf(ticks))
        axis.set_ticklabels(labels)
    limits = norm.ppf([eps, 0.99])
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_xlabel("False accept rate (%)")
    ax.set_ylabel("False reject rate (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def plot_cmc(systems: Mapping[str, np.ndarray], path: str | os.PathLike, title: str = "CMC") -> Path:
    """Identification rate against rank for each `name -> cmc` (entry k-1 = rank-k rate)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, curve in systems.items():
        curve = np.asarray(curve)
        ax.step(np.arange(1, curve.size + 1), curve, where="post", label=name)
    ax.set_xscale("log")
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("Rank")
    ax.set_ylabel("Identification rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_dir(systems: Mapping[str, tuple], path: str | os.PathLike, title: str = "DIR–FPIR") -> Path:
    """Detection and identification rate against FPIR (log scale) for each `name -> (fpirs, dirs)`, as
    `open_set.dir_fpir_curve` gives them (the curve of `bob bio dir`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, (fpirs, dirs) in systems.items():
        ax.semilogx(np.asarray(fpirs), np.asarray(dirs), marker=".", label=name)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("False positive identification rate (FPIR)")
    ax.set_ylabel("Detection and identification rate (DIR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)
