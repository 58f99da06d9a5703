"""The Ray backend: every pending combination as a Ray task, on a cluster or a local Ray instance.

Each task is `run_combo` wrapped in `ray.remote` with the manifest's `[ray]` resources: `num_gpus` per task
(Ray sets CUDA_VISIBLE_DEVICES, so a task sees its GPU as cuda:0; no GPU: a CPU task with `num_cpus`
threads), `max_retries` (Ray reruns a task whose worker died), `retry_exceptions`. Results are collected
with `ray.wait` as they finish; the driver (this process) writes the records, thumbnails and summary.
A retried task in io "shared" resumes from the checkpoint its dead attempt left in `<output>/.checkpoints`.
Ray is optional (`pip install splatbrush[ray]`); nothing here imports it until a batch runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .local import make_task
from .manifest import Combo, Manifest
from .state import BatchState, Log, progress_bar, short_error
from .summary import write_summary
from .task import ComboTask, run_combo


def import_ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError(
            "the Ray backend needs Ray: pip install 'splatbrush[ray]' (or pip install 'ray>=2.9')"
        ) from None
    return ray


def connect(address: str | None, runtime_env: dict[str, Any] | None = None) -> bool:
    """ray.init for `address` unless Ray is already initialized here. auto (or None): RAY_ADDRESS, else the
    cluster `ray start` runs on this machine, else a new local instance; local: always a new local instance;
    ray://HOST:PORT: Ray Client; HOST:PORT: a cluster's GCS. True when this call connected."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"address": None if address in (None, "", "auto") else address}
    if runtime_env:
        kw["runtime_env"] = runtime_env
    ray.init(**kw)
    return True


def gpus_per_task(manifest: Manifest) -> float:
    """`[ray] num_gpus`; "auto": 1 when the cluster has GPUs, else 0."""
    n = manifest.ray.num_gpus
    if n == "auto":
        ray = import_ray()
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return float(n)


def _in_task(task_fn: Callable[[ComboTask], dict], task: ComboTask, asset: Any, style: Any) -> dict:
    """What runs inside a Ray worker. `asset`/`style` are top-level arguments so Ray resolves the object refs
    of io "driver"; None keeps the task's paths."""
    import ray

    if asset is not None:
        task.asset, task.style = asset, style
    task.gpu = bool(ray.get_gpu_ids())
    return task_fn(task)


def _error_text(e: BaseException) -> str:
    ray = import_ray()
    if isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None:
        return short_error(e.cause)
    return short_error(e)


def run_ray(
    manifest: Manifest,
    address: str | None = None,
    thumbnails: int = 160,
    log: Log | None = None,
    progress: bool = True,
    task_fn: Callable[[ComboTask], dict] = run_combo,
    max_in_flight: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Run (or resume) every combination as a Ray task; returns the records (<output>/batch_state.json).
    `address` overrides `[ray] address`. `task_fn` is what each task runs (run_combo; tests wrap it)."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    ray = import_ray()
    opts = manifest.ray
    state = BatchState(manifest)
    combos = manifest.combos()
    todo = state.pending()
    if len(todo) < len(combos):
        log(f"batch: {len(combos) - len(todo)} of {len(combos)} combination(s) already done, skipped")
    if not todo:
        write_summary(manifest, state.records, "Ray")
        return state.records
    started = connect(address or opts.address, opts.runtime_env)
    try:
        num_gpus = gpus_per_task(manifest)
        resources = ray.cluster_resources()
        slots = resources.get("GPU", 0) / num_gpus if num_gpus else resources.get("CPU", 1) / opts.num_cpus
        window = max_in_flight or max(4, int(2 * slots))
        log(
            f"batch: {len(todo)} Ray task(s), {num_gpus:g} GPU and {opts.num_cpus:g} CPU each, "
            f"cluster {resources.get('CPU', 0):g} CPU / {resources.get('GPU', 0):g} GPU"
        )
        remote = ray.remote(_in_task).options(
            num_gpus=num_gpus,
            num_cpus=opts.num_cpus,
            max_retries=opts.max_retries,
            retry_exceptions=opts.retry_exceptions,
        )
        threads = None if num_gpus else max(1, int(opts.num_cpus))
        _collect(manifest, state, todo, remote, task_fn, thumbnails, threads, window, log, progress)
    finally:
        write_summary(manifest, state.records, "Ray")
        if started:
            ray.shutdown()
    return state.records


def _collect(
    manifest: Manifest,
    state: BatchState,
    todo: list[Combo],
    remote: Any,
    task_fn: Callable,
    thumbnails: int,
    threads: int | None,
    window: int,
    log: Log,
    progress: bool,
) -> None:
    """Submit up to `window` tasks at a time; store each result as `ray.wait` hands it back."""
    ray = import_ray()
    shared = manifest.ray.io == "shared"
    queue = list(todo)
    running: dict[Any, Combo] = {}
    total = len(manifest.combos())
    bar = progress_bar(total, total - len(todo), progress)

    def submit(c: Combo) -> None:
        task = make_task(manifest, c, thumbnails, shared_io=shared, threads=threads)
        asset = style = None
        if not shared:  # inputs through the object store, not inside the task description
            asset, style = ray.put(task.asset), ray.put(task.style)
            task.asset, task.style = str(c.asset), str(c.style)
        state.start(c, "ray")
        running[remote.remote(task_fn, task, asset, style)] = c

    try:
        while queue or running:
            while queue and len(running) < window:
                submit(queue.pop(0))
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                c = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as e:  # raised in the task, or retries used up
                    state.fail(c, _error_text(e))
                    log(f"{c.key}: failed: {_error_text(e)}")
                else:
                    rec = state.finish(c, outcome, thumbnails)
                    log(f"{c.key}: done in {rec['time_s']:.1f} s on {rec.get('node')}")
                bar.update(1)
                bar.set_postfix(running=len(running), refresh=False)
    except BaseException:  # Ctrl-C or a driver error: stop what still runs; done work stays recorded
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
