"""Where the project's shared test files are (published CartoonGAN weights, real photos):
`../shared` beside the repository, or $TRANSFIGURE_SHARED. Tests that need them skip
when they are missing, with a reason that starts with MISSING_SHARED: the run's
summary then says so in capitals (conftest.py), so a run that tested no published
weights cannot pass for one that did."""
import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("TRANSFIGURE_SHARED") or Path(__file__).resolve().parents[2] / "shared")
WEIGHTS = SHARED / "weights" / "cartoongan"
PHOTOS = SHARED / "photos"
MISSING_SHARED = "SHARED TEST DATA MISSING"


def needs_shared(*paths: Path):
    """Skip unless every path exists, naming what is missing and how to point at it."""
    missing = [p for p in paths if not p.exists()]
    reason = (f"{MISSING_SHARED}: {', '.join(map(str, missing))} not found (set $TRANSFIGURE_SHARED to the "
              "folder holding weights/ and photos/)")
    return pytest.mark.skipif(bool(missing), reason=reason)


needs_weights = needs_shared(WEIGHTS / "hayao", WEIGHTS / "shinkai", PHOTOS)
