"""PLACEHOLDER until the load-tools work lands."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def load_samples(path: Path) -> pd.DataFrame:
    raise NotImplementedError


def embedded_samples(path: Path) -> pd.DataFrame | None:
    return None
