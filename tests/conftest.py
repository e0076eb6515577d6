"""Shared test settings: parsed-annotation cache in a temporary folder, never in the user's home."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["PERSONSEARCH_CACHE"] = str(tmp_path_factory.mktemp("personsearch-cache"))
