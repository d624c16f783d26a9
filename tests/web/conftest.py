"""Browser tests need Playwright for Python (the root dev group) and Debian's Chromium; without
either they are skipped with the reason, instead of failing to collect."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("playwright") is None:
    collect_ignore = ["test_journey.py", "test_tiles.py"]

    def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
        # Said once per run, so a missing dependency is not mistaken for passing tests.
        print("\ntests/web: Playwright is not installed; the browser tests were not collected")
