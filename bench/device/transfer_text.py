"""Issue 12's text comparison with fine-tuning: reviews, 10/30/100% of train, 3 seeds.

Scratch (loopml's TF-IDF linear model) vs MiniLM freeze / finetune / lp-ft,
through the same engine as ``loopml transfer --compare``
(:func:`loopml.grow.compare.compare_candidates`), scored on val. Fine-tuning
MiniLM does not finish one fit in 20 minutes on 2 CPU cores, so this runs on a
lent GPU machine (``bench/device/run.sh``); it needs no MLflow, as a
comparison records no runs. Usage: ``[SHARES=0.1,0.3] python transfer_text.py OUT.json``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from loopml.grow.compare import Candidate, compare_candidates
from loopml.project import Project

CANDIDATES = [
    Candidate("scratch linear", "linear"),
    Candidate("freeze", "transfer", {"backbone": "minilm", "mode": "freeze"}),
    Candidate("finetune", "transfer", {"backbone": "minilm", "mode": "finetune"}),
    Candidate("lp-ft", "transfer", {"backbone": "minilm", "mode": "lp-ft"}),
]


def main(out: str) -> None:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as folder:
        project = Project.init(Path(folder) / "reviews", data="reviews")
        started = time.perf_counter()

        def heard(*event) -> None:
            print(f"  {event} at {time.perf_counter() - started:.0f} s", flush=True)

        document = {"device": device, "shares": []}
        shares = [float(f) for f in os.environ.get("SHARES", "0.1,0.3,1.0").split(",")]
        for fraction in shares:  # one share at a time: a cut-off run keeps the first
            result = compare_candidates(project.dataset, project.split, project.factory,
                                        CANDIDATES, metric=project.scope.metric, seeds=3,
                                        fractions=[fraction], n_jobs=1, progress=heard)
            document["shares"].append(result.to_dict())
            document["seconds"] = round(time.perf_counter() - started, 1)
            Path(out).write_text(json.dumps(document, indent=2))
            for row in result.rows():
                print(row, flush=True)
            print(result.recommendation(fraction).sentence, flush=True)
    print(f"device {device}, {document['seconds']} s")


if __name__ == "__main__":
    main(sys.argv[1])
