"""One mocked run per (stack, preview) for the whole session: the program is deterministic apart
from the run-time admin range and key, and a run costs seconds on a loaded machine."""
from __future__ import annotations

import pytest

from trustops import mockrun as harness


@pytest.fixture(scope="session")
def stack_run():
    cache: dict[tuple[str, bool], tuple] = {}

    def run(stack: str, preview: bool = False):
        if (stack, preview) not in cache:
            cache[(stack, preview)] = harness.run(stack, preview=preview)
        return cache[(stack, preview)]
    return run
