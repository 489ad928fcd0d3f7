"""transformers' own common tests, fetched from the package registry for the installed transformers version.

The tests are not in transformers' wheel, so the source distribution of the installed version is downloaded once
with pip (`pip download --no-deps --no-binary :all: transformers==X`) into a cache folder and its `tests/*.py` are
unpacked into an importable package (`transformers_tests`). The next transformers release that changes a convention
then fails our conformance tests first, with nothing of transformers copied into this repository.

The sdist carries `tests/*.py` but not the helper files they import from sub-folders of transformers' repository;
those are replaced by the small stand-ins in `_STAND_INS` (see each one's comment).
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import transformers

PACKAGE = "transformers_tests"
CACHE = Path(os.environ.get("HFR_HF_CACHE", Path.home() / ".cache" / "hfr_hf")) / "upstream"
COMMON_FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_image_processing_common.py")

_STAND_INS = {
    # The export tests live in transformers' tests/exporters/, which the sdist lacks; tests/test_modeling.py of this
    # project exports EdgeFace with torch.export itself (and tests/test_onnx.py to ONNX).
    "exporters/__init__.py": "",
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    # Only generative models inherit this mixin; ModelTesterMixin only checks that EdgeFace does not.
    "generation/__init__.py": "",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    # The general config arguments ConfigTester.check_config_arguments_init passes to every config class (the
    # dict of tests/utils/test_configuration_utils.py in transformers' repository at 5.x).
    "utils/__init__.py": "",
    "utils/test_configuration_utils.py": (
        "config_common_kwargs = {\n"
        '    "return_dict": False,\n'
        '    "output_hidden_states": True,\n'
        '    "output_attentions": True,\n'
        '    "dtype": "float16",\n'
        '    "chunk_size_feed_forward": 5,\n'
        '    "architectures": ["BertModel"],\n'
        '    "id2label": {0: "label"},\n'
        '    "label2id": {"label": "0"},\n'
        '    "problem_type": "regression",\n'
        "}\n"
    ),
}
# Imported by test_image_processing_common.py from transformers' utils/ folder (beside tests/) to map Hub URLs of
# test images to a CI cache; EdgeFace's image-processor tests load no such image.
_UTILS_STAND_INS = {"fetch_hub_objects_for_ci.py": "def url_to_local_path(url):\n    return url\n"}


class UpstreamUnavailable(RuntimeError):
    """The source distribution could not be fetched or unpacked."""


def _download_sdist(version: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    command += [f"transformers=={version}", "--dest", str(into)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    archives = sorted(into.glob(f"transformers-{version}.tar.gz"))
    if result.returncode != 0 or not archives:
        raise UpstreamUnavailable(
            f"Could not download the source distribution of transformers {version} from the package registry "
            f"({' '.join(command)} exited with {result.returncode}): {result.stderr.strip()[-800:]}"
        )
    return archives[0]


def _unpack(archive: Path, version: str, root: Path) -> None:
    """tests/*.py of the sdist as package `PACKAGE` under `root`, plus the stand-ins; written aside, then renamed."""
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=".unpack-"))
    try:
        package = staging / PACKAGE
        package.mkdir()
        prefix = f"transformers-{version}/tests/"
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = member.name
                if member.isfile() and name.startswith(prefix) and "/" not in name[len(prefix) :]:
                    with tar.extractfile(member) as source:
                        (package / Path(name).name).write_bytes(source.read())
        missing = [name for name in COMMON_FILES if not (package / name).is_file()]
        if missing:
            raise UpstreamUnavailable(f"The transformers {version} sdist has no tests/{', tests/'.join(missing)}.")
        (package / "__init__.py").write_text("")
        for relative, text in _STAND_INS.items():
            (package / relative).parent.mkdir(parents=True, exist_ok=True)
            (package / relative).write_text(text)
        (staging / "utils").mkdir()
        for relative, text in _UTILS_STAND_INS.items():
            (staging / "utils" / relative).write_text(text)
        if root.exists():
            shutil.rmtree(root)
        try:
            staging.rename(root)
        except OSError:  # another test process unpacked it first
            if not (root / PACKAGE / "__init__.py").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def transformers_tests(version: str | None = None) -> Path:
    """The folder holding package `transformers_tests` (transformers' tests/*.py) for `version` (default: the
    installed one), downloaded and unpacked on first use; put on sys.path."""
    version = version or transformers.__version__
    root = CACHE / f"transformers-{version}"
    if not (root / PACKAGE / "__init__.py").is_file():
        with tempfile.TemporaryDirectory() as download:
            _unpack(_download_sdist(version, Path(download)), version, root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def common_module(name: str) -> ModuleType:
    """One of transformers' common test modules, e.g. `common_module("test_modeling_common")`."""
    transformers_tests()
    return importlib.import_module(f"{PACKAGE}.{name}")
