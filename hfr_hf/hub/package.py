"""This package as a wheel inside a Space repository: a Space installs its `requirements.txt` from the package
index, where hfr-hf is not published, so the Space carries the wheel and its requirements point at it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["WHEEL_FOLDER", "build_package_wheel", "point_requirements_at_wheel", "source_tree"]

WHEEL_FOLDER = "wheels"
_REQUIREMENT = re.compile(r"^\s*hfr[-_]hf\s*(\[(?P<extras>[^\]]*)\])?\s*(@.*)?(#.*)?$", re.IGNORECASE)


def source_tree() -> Path:
    """The checkout this package runs from (its pyproject.toml beside the `hfr_hf` folder)."""
    from .repos import PublishError

    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or 'name = "hfr-hf"' not in pyproject.read_text(encoding="utf-8"):
        raise PublishError(
            "A Space push builds the hfr-hf wheel the Space installs, from a checkout of hfr-hf; this installation "
            f"has none beside {Path(__file__).resolve().parents[1]}. Push from a clone (pip install -e .)."
        )
    return root


def build_package_wheel(output_dir: str | os.PathLike) -> Path:
    """Build this package's wheel from its checkout into `output_dir` (pip, no download: the installed
    setuptools builds it); return the wheel's path."""
    from .repos import PublishError

    root, output_dir = source_tree(), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:  # pip's build folder stays out of the checkout
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", scratch]
        # A fixed file date makes the wheel byte-reproducible: a dry run shows exactly what a push uploads.
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
        done = subprocess.run([*command, str(root)], capture_output=True, text=True, cwd=scratch, env=env)
        wheels = sorted(Path(scratch).glob("hfr_hf-*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise PublishError(f"Building the hfr-hf wheel for the Space failed ({last}).")
        target = output_dir / wheels[0].name
        wheels[0].replace(target)
    return target


def point_requirements_at_wheel(requirements: str, wheel: str) -> str:
    """`requirements` (a requirements.txt's text) with its hfr-hf line pointing at `wheel` (a path relative to the
    Space's root), extras kept."""
    from .repos import PublishError

    lines, found = [], False
    for line in requirements.splitlines():
        match = _REQUIREMENT.match(line)
        if match:
            extras = match.group("extras")
            line, found = f"./{wheel}" + (f"[{extras.replace(' ', '')}]" if extras else ""), True
        lines.append(line)
    if not found:
        raise PublishError("The Space's requirements.txt does not install hfr-hf (a line `hfr-hf[space]`).")
    return "\n".join(lines) + "\n"
