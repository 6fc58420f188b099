"""The other half of the posteriordb posteriors (see test_posteriordb.py for the check and its tolerances)."""

from __future__ import annotations

import pytest

from tests.infer.test_posteriordb import SECOND_HALF, check_posterior


@pytest.mark.slow
@pytest.mark.parametrize("name", SECOND_HALF)
def test_posteriordb_nuts_matches_reference(name: str) -> None:
    check_posterior(name)
