"""``loopml synthesize`` on tables: a Gaussian copula per class, and its fidelity report.

The fidelity figures are checked against cases whose answer is known in
closed form (two samples of one bivariate normal; a column shifted by 2 sd; a
correlation destroyed), and the copula against a table drawn from a known
Gaussian copula (rho = 0.8, an exponential marginal, known category shares,
10% missing values).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import expon, norm, poisson

from checks import refused, state_files
from loopml import Project
from loopml.grow.copula import GaussianCopula, fidelity

RHO = 0.8
NUMBERS = {"a": "numeric", "b": "numeric"}
PENGUIN_NUMBERS = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")


def _bivariate(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(rng.multivariate_normal([0, 0], [[1, RHO], [RHO, 1]], size=n),
                        columns=["a", "b"])


def _normal_scores_corr(x: pd.Series, y: pd.Series) -> float:
    """Pearson correlation of the normal scores (the copula's own correlation)."""
    both = pd.DataFrame({"x": x, "y": y}).dropna()
    scores = norm.ppf((both.rank() - 0.5) / len(both))
    return float(np.corrcoef(scores[:, 0], scores[:, 1])[0, 1])


# ---------------------------------------------------------------- fidelity, known cases


def test_two_samples_of_one_distribution_look_alike():
    rng = np.random.default_rng(0)
    report = fidelity(_bivariate(1000, rng), _bivariate(1000, rng), NUMBERS)
    print(f"same distribution: AUC {report.auc:.3f}, corr diff {report.correlation_diff:.3f}, "
          f"KS {[round(c.ks, 3) for c in report.columns]}")
    assert abs(report.auc - 0.5) < 0.05
    assert report.correlation_diff < 0.05
    assert all(c.ks < 0.07 and c.wasserstein < 0.15 for c in report.columns)
    assert report.n_real == report.n_synthetic == 1000


def test_a_column_shifted_by_two_sd_is_named_and_told_apart():
    rng = np.random.default_rng(1)
    real, fake = _bivariate(1000, rng), _bivariate(1000, rng)
    fake["a"] += 2.0
    report = fidelity(real, fake, NUMBERS)
    shifted, kept = report.column("a"), report.column("b")
    # KS of N(0,1) vs N(2,1) is 2 Phi(1) - 1; the Wasserstein distance is the shift, 2 sd;
    # the best classifier's AUC: a given b has sd 0.6, so the shift is 3.33 of its sds
    ks_known = 2 * norm.cdf(1.0) - 1
    auc_known = norm.cdf(2.0 / np.sqrt(1 - RHO**2) / np.sqrt(2))
    print(f"shifted: KS {shifted.ks:.3f} (known {ks_known:.3f}), W/sd {shifted.wasserstein:.3f} "
          f"(known 2), AUC {report.auc:.3f} (best possible {auc_known:.3f}); other KS "
          f"{kept.ks:.3f}")
    assert abs(shifted.ks - ks_known) < 0.05
    assert abs(shifted.wasserstein - 2.0) < 0.15
    assert kept.ks < 0.07
    assert report.worst_column.column == "a"
    assert 0.95 < report.auc <= auc_known + 0.01
    assert report.correlation_diff < 0.05  # a shift keeps the correlation


def test_a_destroyed_correlation_shows_in_the_correlation_difference():
    rng = np.random.default_rng(2)
    real, fake = _bivariate(1000, rng), _bivariate(1000, rng)
    fake["b"] = rng.permutation(fake["b"].to_numpy())
    report = fidelity(real, fake, NUMBERS)
    a, b, r_real, r_fake = report.worst_pair
    print(f"shuffled: corr diff {report.correlation_diff:.3f} (known {RHO}), pair {a}~{b} "
          f"{r_real:+.2f} -> {r_fake:+.2f}, AUC {report.auc:.3f}, KS "
          f"{[round(c.ks, 3) for c in report.columns]}")
    assert abs(report.correlation_diff - RHO) < 0.06
    assert (a, b) == ("a", "b") and abs(r_fake) < 0.07
    assert all(c.ks < 0.07 for c in report.columns)  # the marginals are untouched
    assert report.auc > 0.65  # the joint is not


def test_category_distance_is_the_total_variation_of_the_shares():
    real = pd.DataFrame({"k": ["x"] * 50 + ["y"] * 30 + ["z"] * 20})
    fake = pd.DataFrame({"k": ["x"] * 30 + ["y"] * 30 + [None] * 40})  # missing: a category
    report = fidelity(real, fake, {"k": "categorical"})
    assert report.column("k").tvd == pytest.approx(0.5 * (0.2 + 0.0 + 0.2 + 0.4))
    assert report.column("k").missing_synthetic == pytest.approx(0.4)
    assert report.correlation_diff is None and report.worst_pair is None
    same = fidelity(real, real.sample(frac=1, random_state=0), {"k": "categorical"})
    assert same.column("k").tvd == pytest.approx(0.0)


# ---------------------------------------------------------------- the copula, known table


def _known_table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """A table drawn from a Gaussian copula: e ~ Exp(scale 2) and x ~ N(0,1) with normal-score
    correlation 0.8, k with shares 0.5/0.3/0.2, c ~ Poisson(4), 10% of x missing at random."""
    corr = [[1, RHO, 0.5, 0.3], [RHO, 1, 0.3, 0.0], [0.5, 0.3, 1, 0.0], [0.3, 0.0, 0.0, 1]]
    z = rng.multivariate_normal(np.zeros(4), corr, size=n)
    u = norm.cdf(z)
    table = pd.DataFrame({"e": expon.ppf(u[:, 0], scale=2.0), "x": z[:, 1],
                          "k": np.where(u[:, 2] < 0.5, "p", np.where(u[:, 2] < 0.8, "q", "r")),
                          "c": poisson.ppf(u[:, 3], 4.0)})
    table.loc[rng.random(n) < 0.1, "x"] = np.nan
    return table


KNOWN = {"e": "numeric", "x": "numeric", "k": "categorical", "c": "numeric"}


def test_the_copula_recovers_a_known_correlation_marginals_and_missing_rate():
    real = _known_table(3000, np.random.default_rng(3))
    copula = GaussianCopula(KNOWN, seed=0).fit(real)
    assert copula.shrinkage_ == 0.0 and copula.dims_ == ["e", "x", "x.missing", "k", "c"]
    fake = copula.sample(6000, rng=np.random.default_rng(4))
    rho = _normal_scores_corr(fake["e"], fake["x"])
    from scipy.stats import kstest

    ks_exp = kstest(fake["e"], expon(scale=2.0).cdf).statistic
    shares = fake["k"].value_counts(normalize=True)
    report = fidelity(real, fake, KNOWN)
    print(f"copula: rho {rho:.3f} (known {RHO}), KS vs Exp(2) {ks_exp:.3f}, mean e "
          f"{fake['e'].mean():.3f} (known 2), shares {shares.round(3).to_dict()} (known "
          f"0.5/0.3/0.2), missing x {fake['x'].isna().mean():.3f} (known 0.1), AUC "
          f"{report.auc:.3f}, corr diff {report.correlation_diff:.3f}")
    assert abs(rho - RHO) < 0.05
    assert ks_exp < 0.03 and abs(fake["e"].mean() - 2.0) < 0.1
    assert shares.to_dict() == pytest.approx({"p": 0.5, "q": 0.3, "r": 0.2}, abs=0.03)
    assert abs(fake["x"].isna().mean() - 0.1) < 0.02
    assert (fake["c"] % 1 == 0).all()  # whole numbers stay whole
    for column in ("e", "x", "c"):  # never outside the observed range
        assert fake[column].min() >= real[column].min()
        assert fake[column].max() <= real[column].max()
    assert abs(report.auc - 0.5) < 0.06 and report.correlation_diff < 0.05


def test_a_singular_correlation_is_shrunk_and_still_samples():
    rng = np.random.default_rng(5)
    real = _bivariate(300, rng).assign(twin=lambda f: f["a"] * 2.0)  # a and twin: rho = 1
    columns = {**NUMBERS, "twin": "numeric"}
    copula = GaussianCopula(columns, seed=0).fit(real)
    fake = copula.sample(500, rng=rng)
    assert 0 < copula.shrinkage_ < 0.01
    assert np.linalg.eigvalsh(copula.correlation_).min() > 0
    assert fake["a"].corr(fake["twin"]) > 0.99


# ---------------------------------------------------------------- a project


@pytest.fixture
def penguins(penguins_csv: Path, tmp_path: Path) -> Project:
    project = Project.init(tmp_path / "pen", data=str(penguins_csv), target="species")
    project.train("linear", report=False)
    return project


def _source_train(project: Project) -> pd.DataFrame:
    train = project.split.ids("train")
    train = train[(project.dataset.origin.reindex(train) == "source").to_numpy()]
    return project.dataset.frame.loc[train]


def _show(out: dict) -> None:
    for s in out["strata"]:
        f = s["fidelity"]
        print(f"{s['class']}: real {s['n_real']}, synth {s['n_synthetic']}, AUC {f['auc']:.3f}, "
              f"corr diff {f['correlation_diff']:.3f}, distances "
              f"{ {c['column']: round(c['distance'], 3) for c in f['columns']} }")


def test_penguins_rows_per_class_from_train_only_with_a_sane_fidelity_report(cli, penguins):
    source = _source_train(penguins)
    result = cli("synthesize", "--count", "30", "--no-lift", "--json", "-p", penguins.root)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    _show(out)
    assert out["kind"] == "table" and out["n_rows"] == 90 and out["skipped"] == []
    reopened = Project.load(penguins.root)
    provenance = reopened.dataset.provenance
    added = provenance.index[provenance["action_id"] == out["action"]["action_id"]]
    assert (provenance.loc[added, "origin"] == "synth").all()
    assert (reopened.split.parts.reindex(added) == "train").all()
    rows = reopened.dataset.frame.loc[added]
    assert rows["species"].value_counts().to_dict() == {"Adelie": 30, "Chinstrap": 30,
                                                        "Gentoo": 30}
    real_counts = source["species"].value_counts()
    for stratum in out["strata"]:  # fitted on the class's source train rows, nothing else
        label = stratum["class"]
        assert stratum["n_real"] == real_counts[label] and stratum["n_synthetic"] == 30
        assert stratum["n_checked"] == stratum["n_real"]  # fidelity: a check sample as large
        fid = stratum["fidelity"]
        assert 0 < fid["auc"] < 0.65, fid["auc"]  # a classifier cannot tell them apart
        assert 0 <= fid["correlation_diff"] < 0.2
        distances = {c["column"]: c for c in fid["columns"]}
        assert set(distances) == set(penguins.dataset.features)
        assert all(0 <= c["distance"] < 0.2 for c in distances.values()), distances
        mine, theirs = rows[rows["species"] == label], source[source["species"] == label]
        for column in PENGUIN_NUMBERS:  # within the class's train range
            assert mine[column].dropna().between(theirs[column].min(),
                                                 theirs[column].max()).all(), column
        assert set(mine["island"].dropna()) <= set(theirs["island"].dropna())
    assert (rows["flipper_length_mm"].dropna() % 1 == 0).all()
    assert set(rows["sex"].dropna()) <= {"male", "female"}
    # a second synthesis still fits on source rows only: the first one's rows are not real
    again = json.loads(cli("synthesize", "--count", "5", "--no-lift", "--json",
                           "-p", penguins.root).stdout)
    assert [s["n_real"] for s in again["strata"]] == [s["n_real"] for s in out["strata"]]


def test_the_cli_prints_the_fidelity_tables(cli, penguins):
    result = cli("synthesize", "--count", "20", "--no-lift", "-p", penguins.root)
    assert result.exit_code == 0, result.output
    for needle in ("Gaussian copula fidelity", "AUC real vs synth", "per-column distance",
                   "bill_length_mm", "Chinstrap", "added 60 synthesized train row(s)"):
        assert needle in result.output, result.output


def test_a_group_fits_on_its_train_rows_and_names_the_classes_too_small(cli, penguins):
    frame = penguins.dataset.frame
    dream = frame.index[(frame["island"] == "Dream").to_numpy()]
    gentoo = frame.index[(frame["species"] == "Gentoo").to_numpy()]
    train = set(penguins.split.ids("train"))
    few_gentoo = [i for i in gentoo if i in train][:3]  # a class too small for a copula
    penguins.tag([*dream, *few_gentoo], "dreamish")
    result = cli("synthesize", "--group", "trait:dreamish", "--count", "10", "--no-lift",
                 "--json", "-p", penguins.root)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    _show(out)
    assert [s["class"] for s in out["strata"]] == ["Adelie", "Chinstrap"]
    assert out["skipped"] == [{"class": "Gentoo",
                               "reason": "3 train row(s); a copula needs at least 5"}]
    source = _source_train(penguins)
    in_group = source.loc[source.index.isin(dream)]
    assert [s["n_real"] for s in out["strata"]] == [
        int((in_group["species"] == c).sum()) for c in ("Adelie", "Chinstrap")]
    added = Project.load(penguins.root).dataset.frame.iloc[-20:]
    assert set(added["island"]) == {"Dream"}  # the group's rows only
    assert out["action"]["target_group"] == "trait:dreamish"


def test_regression_puts_the_target_in_the_copula_and_its_limit_shows(cli, boston_parquet,
                                                                       tmp_path):
    """Boston's town-level columns share exact values (every tract with rad 24 has tax 666):
    a Gaussian copula cannot keep such ties, and the report's AUC must say so."""
    project = Project.init(tmp_path / "boston", data=str(boston_parquet), target="medv")
    result = cli("synthesize", "--count", "50", "--no-lift", "--json", "-p", project.root)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    _show(out)
    (stratum,) = out["strata"]
    assert stratum["class"] is None and stratum["n_synthetic"] == 50
    columns = {c["column"] for c in stratum["fidelity"]["columns"]}
    assert "medv" in columns
    rows = Project.load(project.root).dataset.frame.iloc[-50:]
    source = _source_train(project)
    assert rows["medv"].between(source["medv"].min(), source["medv"].max()).all()
    assert (rows["chas"] % 1 == 0).all()
    paired_real = (source.loc[source["rad"] == 24, "tax"] == 666).mean()
    paired_fake = (rows.loc[rows["rad"] == 24, "tax"] == 666).mean()
    print(f"rad 24 with tax 666: real {paired_real:.2f}, synthetic {paired_fake:.2f}")
    assert paired_real == 1.0 and paired_fake < 0.9
    assert stratum["fidelity"]["auc"] > 0.8  # the report sees what the copula misses


# ---------------------------------------------------------------- bad input


def test_bad_requests_are_refused_and_write_nothing(cli, penguins, tmp_path):
    before = state_files(penguins.root)
    refused(cli("synthesize", "--count", "0", "--no-lift", "-p", penguins.root),
            "count must be a whole number of rows per class, at least 1, not 0")
    refused(cli("synthesize", "--group", "trait:nope", "--no-lift", "-p", penguins.root),
            "nope")
    assert state_files(penguins.root) == before
    words = ["the quick brown fox jumps over a lazy dog", "a slow red hen walks past the barn",
             "my old grey cat sleeps all day long", "one bright star shines above the hill"]
    text = pd.DataFrame({"review": [f"{words[i % 4]} number {i}" for i in range(60)],
                         "stars": [i % 2 for i in range(60)]})
    text.to_csv(tmp_path / "reviews.csv", index=False)
    reviews = Project.init(tmp_path / "reviews", data=str(tmp_path / "reviews.csv"),
                           target="stars")
    assert reviews.dataset.features == {"review": "text"}
    before = state_files(reviews.root)
    refused(cli("synthesize", "--no-lift", "-p", reviews.root), "has text columns",
            "loopml augment")
    assert state_files(reviews.root) == before


# ---------------------------------------------------------------- lift


@pytest.mark.slow
def test_synthesized_rows_get_their_lift_measured_and_recorded(penguins):
    record, result = penguins.synthesize(count=30, seeds=3)
    lift = result.lift
    print(f"lift of copula rows on penguins (linear): {lift.describe()}; before "
          f"{lift.overall.before.values}, after {lift.overall.after.values}")
    assert lift.action_id == record.action_id and len(lift.seeds) == 3
    assert lift.n_train_after == lift.n_train_before + 90
    (entry,) = [e for e in penguins.ledger() if e.action_id == record.action_id]
    assert entry.origin == "synth" and entry.lift.overall.after.values == \
        lift.overall.after.values
    assert lift.run_id is not None and entry.lift_run_id == lift.run_id
