"""Batch of 8 tiny combinations (2 assets x 2 styles x 2 seeds): local backend vs Ray with 2 CPU workers.

    .venv/bin/python benchmarks/bench_batch.py [--repeats 3]

Prints wall time of each backend (median of repeats), Ray's overhead per task (Ray wall x workers / tasks -
the mean task time inside the workers), and the start-up cost of a local Ray instance (ray.init).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from batch_helpers import make_inputs, write_manifest  # noqa: E402

from engine import batch  # noqa: E402


def manifest(folder: Path, name: str) -> Path:
    assets, styles = make_inputs(folder)
    m = write_manifest(folder, name, assets, styles)
    text = m.read_text().replace("seed = 1\n", 'seed = 1\nname = "s1"\n')
    text += text[text.index("[[settings]]") :].replace("seed = 1", "seed = 2").replace('"s1"', '"s2"')
    m.write_text(text)
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import ray

    quiet = {"thumbnails": 0, "progress": False, "log": lambda _: None}
    local, rayt, init, task_s = [], [], [], []
    for r in range(a.repeats):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            batch.run(manifest(Path(d), f"local{r}"), "local", **quiet)
            local.append(time.perf_counter() - t)
            t = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            init.append(time.perf_counter() - t)
            t = time.perf_counter()
            rec = batch.run(manifest(Path(d), f"ray{r}"), "ray", **quiet)
            rayt.append(time.perf_counter() - t)
            task_s.append(statistics.mean(x["time_s"] for x in rec.values()))
            ray.shutdown()
            assert len(rec) == 8 and all(x["state"] == "done" for x in rec.values())
    med = statistics.median
    print(f"local backend, 8 combos:        {med(local):6.2f} s  ({med(local) / 8:.2f} s/combo)")
    print(
        f"Ray, 2 CPU workers, 8 combos:   {med(rayt):6.2f} s  (ratio to local {med(rayt) / med(local):.2f})"
    )
    print(f"mean task time inside workers:  {med(task_s):6.2f} s")
    print(f"Ray overhead per task:          {med(rayt) * 2 / 8 - med(task_s):6.2f} s")
    print(f"ray.init(num_cpus=2):           {med(init):6.2f} s")


if __name__ == "__main__":
    main()
