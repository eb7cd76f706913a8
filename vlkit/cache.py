"""Where vlkit keeps what it builds once and reuses: converted weights, packaged datasets, features."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$VLKIT_CACHE``, or ``~/.cache/vlkit`` when unset (``~`` expanded)."""
    return Path(os.environ.get("VLKIT_CACHE") or Path.home() / ".cache" / "vlkit").expanduser()
