"""Clusters of errors in an embedding space, on real data with planted errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.feature_extraction.text import TfidfVectorizer

from loopml.errors.clusters import Cluster, find_clusters

SHIPPING = {
    "subject": ["my parcel", "the package", "my order", "the delivery", "the shipment"],
    "verb": ["arrived late", "never arrived", "came damaged", "was lost by the courier",
             "is still missing"],
    "tail": ["and I want a refund", "so please send a replacement",
             "and the tracking number is wrong", "and customer service ignored me"],
}
FOOTBALL = {
    "subject": ["the striker", "our goalkeeper", "the home team", "the coach", "the midfielder"],
    "verb": ["scored twice", "won the match", "lost the final", "was injured in training",
             "saved a penalty"],
    "tail": ["in the second half", "before the league season", "against the champions",
             "in front of the stadium crowd"],
}


def _vocabulary(topic: dict[str, list[str]]) -> set[str]:
    return {w.lower() for phrases in topic.values() for p in phrases for w in p.split()}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.data, data.target


@pytest.fixture(scope="module")
def two_topics() -> tuple[list[str], np.ndarray, np.ndarray]:
    """150 shipping complaints (60% errors) and 150 football reports (3% errors)."""
    rng = np.random.default_rng(0)

    def sentences(topic: dict[str, list[str]], n: int) -> list[str]:
        return [f"{rng.choice(topic['subject']).capitalize()} {rng.choice(topic['verb'])} "
                f"{rng.choice(topic['tail'])}." for _ in range(n)]

    texts = sentences(SHIPPING, 150) + sentences(FOOTBALL, 150)
    shipping = np.r_[np.ones(150, bool), np.zeros(150, bool)]
    errors = np.where(shipping, rng.random(300) < 0.6, rng.random(300) < 0.03).astype(float)
    return texts, shipping, errors


def _planted_on_eights(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    errors = (rng.random(len(labels)) < 0.03).astype(float)
    errors[labels == 8] = 1.0
    return errors


def test_errors_planted_on_one_class_are_found_and_named(digits) -> None:
    pixels, labels = digits
    errors = _planted_on_eights(labels)
    ids = [f"img{i}" for i in range(len(labels))]  # describe is aligned by position
    describe = pd.DataFrame({"label": labels.astype(str),
                             "bright": pixels.sum(axis=1) > np.median(pixels.sum(axis=1))},
                            index=ids)
    clusters = find_clusters(pixels, errors, describe=describe)
    assert clusters
    top = clusters[0]
    assert np.mean(labels[top.members] == 8) > 0.6
    assert top.description[0].startswith("label = 8 (")
    assert top.error_rate > 0.5 > 0.15 > top.error_rate_outside
    assert top.p_value < 1e-6
    # every reported cluster is significant, errs more inside, and is big enough
    for c in clusters:
        assert c.p_value < 0.05 and c.error_rate > c.error_rate_outside and c.size >= 5
        assert c.size == len(c.members) and c.errors == errors[c.members].sum()
    # most excess errors first
    excess = [c.excess_errors for c in clusters]
    assert excess == sorted(excess, reverse=True)
    # examples are erroneous members, at most 8
    assert 0 < len(top.examples) <= 8
    assert set(top.examples) <= set(top.members.tolist())
    assert errors[top.examples].min() == 1.0
    # together the clusters hold most of the eights
    found = np.concatenate([c.members for c in clusters])
    assert np.isin(np.flatnonzero(labels == 8), found).mean() > 0.8


def test_members_are_the_rows_nearest_their_centre(digits) -> None:
    """A cluster keeps all k centres, so any rows can be assigned to it later."""
    from loopml.groups.cluster import nearest_centre

    pixels, labels = digits
    clusters = find_clusters(pixels, _planted_on_eights(labels))
    centres = clusters[0].centres
    assert centres.shape == (30, 64)  # k = round(sqrt(1797 / 2)) = 30 centres of 64 pixels
    nearest = nearest_centre(pixels, centres)
    for c in clusters:
        assert (c.centres is centres) and (np.flatnonzero(nearest == c.label) == c.members).all()


def test_noise_errors_give_no_clusters(digits) -> None:
    pixels, labels = digits
    for seed in range(3):
        errors = (np.random.default_rng(seed).random(len(labels)) < 0.1).astype(float)
        assert find_clusters(pixels, errors, random_state=seed) == []


def test_regression_losses_use_a_t_test(digits) -> None:
    pixels, labels = digits
    rng = np.random.default_rng(1)
    losses = rng.exponential(1.0, len(labels))
    losses[labels == 8] += 3.0
    clusters = find_clusters(pixels, losses,
                             describe=pd.DataFrame({"label": labels}))
    assert clusters
    assert np.mean(labels[clusters[0].members] == 8) > 0.6
    assert clusters[0].description[0].startswith("label = 8 (")
    assert clusters[0].error_rate > 3.0 > 1.5 > clusters[0].error_rate_outside
    noise = find_clusters(pixels, rng.exponential(1.0, len(labels)))
    assert noise == []


def test_same_seed_same_clusters(digits) -> None:
    pixels, labels = digits
    errors = _planted_on_eights(labels)
    first = [c.to_dict() for c in find_clusters(pixels, errors, random_state=3)]
    again = [c.to_dict() for c in find_clusters(pixels, errors, random_state=3)]
    assert first == again


def test_text_clusters_are_described_by_their_topic_words(two_topics) -> None:
    texts, shipping, errors = two_topics
    vectors = TfidfVectorizer().fit_transform(texts).toarray()
    clusters = find_clusters(vectors, errors, texts=texts)
    _assert_shipping_clusters(clusters, shipping)


@pytest.mark.slow
def test_text_clusters_in_the_minilm_space(two_topics) -> None:
    from loopml.models.backbones import embed_text, text_encoder_available

    if not text_encoder_available():
        pytest.skip("no text encoder installed")
    texts, shipping, errors = two_topics
    clusters = find_clusters(embed_text(texts), errors, texts=texts)
    _assert_shipping_clusters(clusters, shipping)


def _assert_shipping_clusters(clusters: list[Cluster], shipping: np.ndarray) -> None:
    assert clusters
    shipping_words, football_words = _vocabulary(SHIPPING), _vocabulary(FOOTBALL)
    for c in clusters:
        assert shipping[c.members].mean() > 0.9
        words = c.description[0].removeprefix("words: ").split(", ")
        assert c.description[0].startswith("words: ") and 3 <= len(words) <= 5
        assert set(words) <= shipping_words - football_words, words


def test_to_dict_is_json_ready(digits) -> None:
    pixels, labels = digits
    errors = _planted_on_eights(labels)
    clusters = find_clusters(pixels, errors, describe=pd.DataFrame({"label": labels}))
    record = json.loads(json.dumps(clusters[0].to_dict()))
    assert record["members"] == clusters[0].members.tolist()
    assert record["size"] == len(record["members"])
    assert record["description"] == clusters[0].description
    assert set(record) >= {"label", "size", "errors", "error_rate", "error_rate_outside",
                           "p_value", "examples", "excess_errors", "lift"}


def test_describe_handles_numeric_and_missing_values(digits) -> None:
    pixels, labels = digits
    errors = _planted_on_eights(labels)
    ink = pixels.sum(axis=1)
    label_with_gaps = pd.Series(labels, dtype=float)
    label_with_gaps[::7] = np.nan
    describe = pd.DataFrame({"ink": ink, "label": label_with_gaps})
    top = find_clusters(pixels, errors, describe=describe)[0]
    assert any(item.startswith("label = 8 (") for item in top.description)  # 8.0 shown as 8
    assert all(len(item) < 80 for item in top.description)


def test_edge_cases_return_empty_lists() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 5))
    assert find_clusters(vectors, np.zeros(40)) == []  # nothing errs
    assert find_clusters(np.zeros((0, 5)), np.zeros(0)) == []  # no rows
    assert find_clusters(vectors[:3], np.array([1.0, 0, 0]), n_clusters=10) == []  # k > n
    assert find_clusters(np.ones((30, 4)), np.r_[np.ones(10), np.zeros(20)]) == []  # one point
    # stop words only: no words, but no crash either
    texts = ["the and of"] * 20 + ["it is a"] * 20
    planted = np.r_[np.ones(20), np.zeros(20)]
    found = find_clusters(np.r_[np.tile([1.0, 0], (20, 1)), np.tile([0, 1.0], (20, 1))],
                          planted, texts=texts, min_size=5)
    assert found and found[0].description == []


def test_bad_inputs_say_what_arrived() -> None:
    vectors = np.zeros((10, 3))
    with pytest.raises(ValueError, match="embeddings has 10 rows and errors has shape"):
        find_clusters(vectors, np.zeros(9))
    with pytest.raises(ValueError, match="shape"):
        find_clusters(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="non-negative"):
        find_clusters(vectors, np.full(10, -1.0))
    with pytest.raises(ValueError, match="texts has 2"):
        find_clusters(vectors, np.zeros(10), texts=["a", "b"])
    with pytest.raises(ValueError, match="n_clusters"):
        find_clusters(vectors, np.zeros(10), n_clusters=1)
