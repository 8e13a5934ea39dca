"""Session-wide test fixtures: the on-disk cache of compiled fixtures (tests/build_cache.py)."""

from __future__ import annotations

import os

import pytest
from build_cache import BuildCache


@pytest.fixture(scope="session")
def build_cache(request, tmp_path_factory) -> BuildCache:
    """Compiled fixtures by content hash: ``$REEF_TEST_CACHE``, else pytest's cache folder
    (.pytest_cache/d/reef-builds, kept between runs), else a folder for this session only
    (with ``-p no:cacheprovider``)."""
    root = os.environ.get("REEF_TEST_CACHE")
    if not root:
        cache = getattr(request.config, "cache", None)
        root = cache.mkdir("reef-builds") if cache else tmp_path_factory.mktemp("reef-builds")
    out = BuildCache(root)
    out.prune()
    return out
