"""Running a sweep's points on a local process pool or a Dask distributed cluster.

Results are stored as each point finishes, so an interrupted sweep loses only the points in
flight, and a resumed sweep (`resume=True`) computes only what is missing.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from simulator.dse.config import SruPoint, SweepConfig
from simulator.dse.evaluate import evaluate_point, limit_threads
from simulator.dse.store import ResultStore


class SweepInterruptedError(RuntimeError):
    """The sweep stopped before every point finished; what finished is saved."""


@dataclass
class SweepOutcome:
    computed: int  # points evaluated in this run
    reused: int  # points found finished from an earlier run
    failed: list[str]  # labels of points whose evaluation raised
    results: list[dict[str, Any]]  # every finished point of this config, in config order


def _pending(cfg: SweepConfig, store: ResultStore) -> tuple[list[SruPoint], list[SruPoint]]:
    """All points, and those not finished yet."""
    points = cfg.points()
    done = store.results()
    return points, [p for p in points if p.key(cfg) not in done]


def _run_local(
    todo: list[SruPoint], cfg_data: dict[str, Any], workers: int
) -> Iterator[tuple[SruPoint, dict[str, Any] | None, str | None]]:
    # spawn, not fork: numba's and torch's thread pools do not survive a fork
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=limit_threads) as ex:
        futures = {ex.submit(evaluate_point, p.model_dump(mode="json"), cfg_data): p for p in todo}
        for fut in as_completed(futures):
            point = futures[fut]
            try:
                yield point, fut.result(), None
            except BrokenProcessPool:
                raise
            except Exception as exc:  # a point's own failure must not stop the sweep
                yield point, None, f"{type(exc).__name__}: {exc}"


def _run_dask(
    todo: list[SruPoint], cfg_data: dict[str, Any], address: str
) -> Iterator[tuple[SruPoint, dict[str, Any] | None, str | None]]:
    from distributed import Client
    from distributed import as_completed as dask_as_completed

    try:
        client = Client(address, timeout="20s")
    except OSError as exc:
        raise SweepInterruptedError(
            f"cannot reach the Dask scheduler at {address}: {exc}"
        ) from None
    with client:
        futures = {
            client.submit(evaluate_point, p.model_dump(mode="json"), cfg_data, pure=False): p
            for p in todo
        }
        for fut in dask_as_completed(list(futures)):
            point = futures[fut]
            try:
                yield point, fut.result(), None
            except Exception as exc:  # includes KilledWorker after repeated worker deaths
                yield point, None, f"{type(exc).__name__}: {exc}"


def run_sweep(
    cfg: SweepConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SweepOutcome:
    """Evaluate every point of `cfg` not already finished in `out_dir`."""
    store = ResultStore(out_dir)
    store.open_for(resume)
    (Path(out_dir) / "sweep.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    points, todo = _pending(cfg, store)
    cfg_data = cfg.model_dump(mode="json")
    failed: list[str] = []
    bar = tqdm(
        total=len(points),
        initial=len(points) - len(todo),
        desc=f"sweep {cfg.name}",
        unit="point",
        disable=not progress,
    )
    if scheduler:
        stream = _run_dask(todo, cfg_data, scheduler)
    else:
        stream = _run_local(todo, cfg_data, workers or os.cpu_count() or 1)
    computed = 0
    try:
        for point, row, error in stream:
            if row is not None:
                store.add_result(row)
                computed += 1
            else:
                store.add_failure(point.key(cfg), point.label, error or "unknown error")
                failed.append(point.label)
            bar.update(1)
    except BrokenProcessPool:
        saved = len(store.results())
        raise SweepInterruptedError(
            f"a worker process died; {saved} finished point(s) are saved in {out_dir}; "
            "run the same command with --resume to compute only the rest"
        ) from None
    finally:
        bar.close()
    results = store.results()
    ordered = [results[p.key(cfg)] for p in points if p.key(cfg) in results]
    return SweepOutcome(computed, len(points) - len(todo), failed, ordered)
