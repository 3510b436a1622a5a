from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = REPO_ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real public data set; absent in a user's clone, so tests that need it skip."""
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is absent (it is only beside developer and CI checkouts)")
    return REALDATA
