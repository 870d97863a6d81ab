"""The built-in text project: food product reviews, through the real CLI and a real store."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from loopml.data.sources import read_source


def _ok(result) -> None:
    assert result.exit_code == 0, result.output


def test_reviews_source_is_text_with_stable_ids_and_no_product_id() -> None:
    raw = read_source("reviews", Path("."))
    assert len(raw.frame) == 5000 and list(raw.frame.columns) == ["review", "score"]
    assert set(raw.frame["score"]) == {"great", "other"}
    assert raw.ids[0] == "reviews-0000" and raw.ids[-1] == "reviews-4999" and raw.ids.is_unique
    assert raw.feature_types == {"review": "text"} and raw.default_target == "score"
    again = read_source("reviews", Path("."))
    assert again.ids.equals(raw.ids) and again.frame.equals(raw.frame)  # stable across reads


def test_init_reviews_and_train_the_tfidf_linear_model(cli) -> None:
    result = cli("init", "rev", "--data", "reviews")
    _ok(result)
    scope = yaml.safe_load(Path("rev/loopml.yaml").read_text())
    assert scope["data"]["source"] == "reviews" and scope["data"]["target"] == "score"
    assert scope["data"]["features"] == {"review": "text"} and scope["task"] == "classification"

    result = cli("train", "-p", "rev", "--arch", "linear", "--json")
    _ok(result)
    trained = json.loads(result.stdout)
    metric = scope["metric"]
    val, chance = trained["metrics"][f"val_{metric}"], trained["metrics"][f"val_chance_{metric}"]
    print(f"reviews, linear (TF-IDF): val {metric} {val:.4f}, majority reference {chance:.4f}")
    # 65% of the reviews are "great": a model that reads the words does clearly better
    assert val > chance + 0.1 and 0.7 < val < 0.99
