"""The source of the conformance tests: transformers' common tests, fetched for the installed version."""

import os

import pytest
import transformers

from tests.upstream_suites import COMMON_FILES, PACKAGE, UpstreamUnavailable, transformers_tests


def test_transformers_common_tests_are_fetched_for_the_installed_version():
    try:
        root = transformers_tests()
    except UpstreamUnavailable as error:
        if os.environ.get("HFR_HF_REQUIRE_ASSETS") == "1":  # CI: test_transformers_common.py may not just skip
            pytest.fail(str(error))
        pytest.skip(str(error))
    assert root.name == f"transformers-{transformers.__version__}"
    assert all((root / PACKAGE / name).stat().st_size > 10_000 for name in COMMON_FILES)
