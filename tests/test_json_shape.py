"""Every verb's ``--json`` document keeps the keys it had before the spine was redesigned.

Scripts and the autopilot parse these documents; a renamed key must fail here,
not in a user's pipeline. The key sets below were captured from loopml's
output before issue 8 (typed evidence may add keys, never drop or rename one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ITERATION = {"run_id", "architecture", "params", "metrics", "metric", "data_version",
             "split_version", "created", "duration_s", "report", "warnings"}
CHOSEN_RUN = {"run_id", "architecture", "reason", "data_version", "split_version"}
CURVE_POINT = {"x", "train", "train_band", "val", "val_band", "folds"}
DIAGNOSIS = {"run_id", "architecture", "metric", "modality", "folds", "n_train",
             "baseline_error", "baseline_source", "baseline_estimated", "baseline_note",
             "target_error", "j_train", "j_train_band", "j_cv", "j_cv_band", "avoidable_bias",
             "bias_band", "variance", "variance_band", "tolerance", "verdict", "verdict_text",
             "learning_curve", "validation_curves", "advice", "data_version", "split_version",
             "created", "seconds", "n_fits", "report", "majority_error", "signal_band",
             "reference_architecture", "reference_error", "reference_band", "planning"}
PLANNING = {"mode", "folds", "budget_s", "planned_fits", "done_fits", "base_fit_s", "left_out"}
EXTRAPOLATION = {"fitted", "a", "b", "asymptote", "target_error", "examples_needed",
                 "interval", "flattened", "slope_per_doubling", "message", "reliable"}
VALIDATION_CURVE = {"knob", "points", "current", "current_error", "best", "best_error",
                    "setting"}
ERRORS = {"run_id", "architecture", "task", "metric", "data_version", "split_version",
          "created", "n_val", "n_errors", "error", "errors", "traits", "pairs", "slices",
          "clusters", "label_issues", "label_check", "history", "notes", "thumbnails",
          "modality", "ranked", "report", "clusters_searched"}
ERROR_ROW = {"id", "y_true", "y_pred", "confidence", "p_true", "residual", "traits",
             "label_issue", "suggested_label", "features"}
GROUP = {"kind", "key", "name", "description", "size", "n_errors", "share", "rate_inside",
         "rate_outside", "ceiling", "label_issues", "p_value", "source", "extra"}


def _orders(n: int = 1500, seed: int = 6) -> pd.DataFrame:
    """Orders whose rule is reversed in one shop and channel: a slice to find."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"order": [f"o{i:05d}" for i in range(n)],
                          "shop": rng.choice([f"s{i}" for i in range(5)], n),
                          "channel": rng.choice(["web", "app", "phone", "store"], n),
                          "x": rng.normal(size=n), "z": rng.normal(size=n)})
    y = (frame["x"] + 0.5 * frame["z"] > 0).to_numpy()
    inside = (frame["shop"] == "s3") & (frame["channel"] == "web")
    frame["label"] = np.where(np.where(inside, ~y, y), "yes", "no")
    return frame


def _doc(result) -> dict | list:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _has(doc: dict, keys: set[str], what: str) -> None:
    missing = keys - set(doc)
    assert not missing, f"{what} lost keys {sorted(missing)}"


@pytest.mark.slow
def test_every_verb_keeps_its_json_keys(cli, tmp_path: Path) -> None:
    _orders().to_csv(tmp_path / "orders.csv", index=False)
    init = _doc(cli("init", "p", "--data", "orders.csv", "--target", "label", "--id-column",
                    "order", "--json"))
    _has(init, {"project", "scope", "split", "data_version", "warnings", "class_balance",
                "metric_choice"}, "init")
    _has(init["split"], {"train", "val", "test"}, "init.split")
    _has(init["scope"], {"name", "task", "data", "metric", "baseline", "target_performance",
                         "split", "seed", "budget", "architectures", "tracking_uri",
                         "ray_address", "traits", "traits_module", "balance"}, "init.scope")

    trained = _doc(cli("train", "-p", "p", "--arch", "linear", "--json"))
    _has(trained, ITERATION, "train")
    _has(trained["metrics"], {"train_accuracy", "val_accuracy", "val_log_loss", "val_roc_auc",
                              "val_average_precision"}, "metrics")
    for verb in (("runs",), ("show", trained["run_id"][:8])):
        doc = _doc(cli(*verb, "-p", "p", "--json"))
        _has(doc[0] if isinstance(doc, list) else doc, ITERATION, verb[0])
    assert _doc(cli("runs", "-p", "p", "--json"))[0]["best"] is True

    diagnosis = _doc(cli("diagnose", "-p", "p", "--folds", "3", "--json"))
    _has(diagnosis, DIAGNOSIS, "diagnose")
    _has(diagnosis["chosen_run"], CHOSEN_RUN, "diagnose.chosen_run")
    _has(diagnosis["planning"], PLANNING, "diagnose.planning")
    _has(diagnosis["learning_curve"], {"points", "extrapolation", "max_train",
                                       "gain_from_doubling"}, "diagnose.learning_curve")
    _has(diagnosis["learning_curve"]["points"][0], CURVE_POINT, "learning curve point")
    _has(diagnosis["learning_curve"]["extrapolation"], EXTRAPOLATION, "extrapolation")
    for knob, curve in diagnosis["validation_curves"].items():
        _has(curve, VALIDATION_CURVE, f"validation curve {knob}")
        _has(curve["points"][0], CURVE_POINT, f"validation curve {knob} point")
    _has(diagnosis["advice"][0], {"action", "title", "score", "why"}, "advice")
    assert isinstance(diagnosis["verdict"], str) and isinstance(diagnosis["advice"][0]["action"],
                                                                str)

    errors = _doc(cli("errors", "-p", "p", "--json"))
    _has(errors, ERRORS, "errors")
    _has(errors["chosen_run"], CHOSEN_RUN, "errors.chosen_run")
    _has(errors["errors"][0], ERROR_ROW, "errors.errors")
    for kind in ("traits", "pairs", "slices"):
        assert errors[kind], f"the orders table should give {kind}"
        _has(errors[kind][0], GROUP, f"errors.{kind}")
    assert {"true", "predicted"} <= set(errors["pairs"][0]["extra"])
    assert {"slice", "score", "n_tried"} <= set(errors["slices"][0]["extra"])
    assert errors["slices"][0]["extra"]["slice"]["predicates"][0]["column"]
    _has(errors["label_issues"][0], {"id", "part", "given", "suggested", "quality"},
         "label issue")
    _has(errors["label_check"], {"checked", "n_checked", "n_found", "folds", "model", "method",
                                 "withheld", "per_class", "judge_balanced_accuracy",
                                 "chance_balanced_accuracy"},
         "label_check")
    _has(errors["history"][0], {"key", "kind", "name", "runs"}, "history")
    _has(errors["history"][0]["runs"][0], {"run_id", "architecture", "created", "size",
                                           "n_errors", "rate"}, "history run")

    tagged = _doc(cli("tag", errors["errors"][0]["id"], "odd", "-p", "p", "--json"))
    _has(tagged, {"trait", "changed", "removed", "tagged"}, "tag")
    architectures = _doc(cli("architectures", "--json"))
    _has(architectures[0], {"name", "summary", "tasks", "input", "knobs", "default_size",
                            "default_reg"}, "architectures")
    ran = _doc(cli("run", "p", "--arch", "linear", "--arch", "gbt", "--json"))
    _has(ran, {"candidates", "best", "test_metrics", "report", "warnings"}, "run")
    _has(ran["candidates"][0], ITERATION, "run.candidates")
    assert "test_accuracy" in ran["test_metrics"]
