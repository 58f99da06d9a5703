"""Time and memory of the torch Magenta networks (engine.models.magenta) on this machine, beside onnxruntime.

    .venv/bin/python benchmarks/bench_magenta.py [--repeats 7] [--threads 2] [--size 384]

Prints medians (seconds) of: weight loading (conversion, then cached), one style vector (256 px), one
transform at --size (forward; forward + backward to the content), the predictor's feature maps (forward +
backward), and the same forward passes in onnxruntime (the wheel's int8 graphs, and our float graphs) as the
baseline; then the peak RSS growth of the process over a forward + backward of the transformer.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

import torch


def _median(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=384)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from engine.models.magenta import load_magenta
    from engine.models.magenta import weights as mw

    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["XDG_CACHE_HOME"] = tmp  # a cold cache first, then the cached load
        t = time.perf_counter()
        nets = load_magenta("cpu")
        rows.append(("load: convert ONNX + write cache", time.perf_counter() - t))
        t = time.perf_counter()
        nets = load_magenta("cpu")
        rows.append(("load: from the cache", time.perf_counter() - t))
    g = torch.Generator().manual_seed(0)
    style = torch.rand(1, 3, 256, 256, generator=g)
    content = torch.rand(1, 3, args.size, args.size, generator=g)
    with torch.no_grad():
        vec = nets.style_vector(style)

    def vector():
        with torch.no_grad():
            nets.style_vector(style)

    def forward():
        with torch.no_grad():
            nets.stylize(content, vec)

    def forward_backward():
        c = content.clone().requires_grad_(True)
        nets.stylize(c, vec).mean().backward()

    def features_backward():
        c = content.clone().requires_grad_(True)
        sum(f.square().mean() for f in nets.features(c)).backward()

    before = _rss_mb()
    forward_backward()  # first, so the process peak is this pass's
    grew = _rss_mb() - before
    rows.append(("style vector, 256 px (torch)", _median(vector, args.repeats)))
    rows.append((f"transform {args.size} px forward (torch)", _median(forward, args.repeats)))
    size = args.size
    rows.append((f"transform {size} px forward+backward (torch)", _median(forward_backward, args.repeats)))
    rows.append((f"predictor features {size} px fwd+bwd (torch)", _median(features_backward, args.repeats)))
    try:
        import onnxruntime as ort

        from engine.models.magenta.convert import float_model

        files = mw.onnx_files()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.log_severity_level = 3
        x = style.permute(0, 2, 3, 1).numpy()
        c = content.permute(0, 2, 3, 1).numpy()
        v = vec.numpy().reshape(1, 1, 1, -1)
        graphs = (("int8 QDQ", str), ("float", lambda p: float_model(p).SerializeToString()))
        for label, make in graphs:
            sp = ort.InferenceSession(make(files[mw.PREDICT_FILE]), opts)
            st = ort.InferenceSession(make(files[mw.TRANSFORM_FILE]), opts)
            names = [i.name for i in st.get_inputs()]
            feeds = {names[0]: c, names[1]: v}
            run_p = lambda sp=sp: sp.run(None, {"style_image": x})  # noqa: E731
            run_t = lambda st=st, feeds=feeds: st.run(None, feeds)  # noqa: E731
            rows.append((f"style vector (onnxruntime {label})", _median(run_p, args.repeats)))
            rows.append((f"transform {size} px forward (onnxruntime {label})", _median(run_t, args.repeats)))
    except ImportError:
        print("onnxruntime not installed: no baseline")
    for name, sec in rows:
        print(f"{name:<56} {sec:8.3f} s")
    print(f"{'peak RSS (process)':<56} {_rss_mb():8.0f} MB ({grew:.0f} MB growth in the first fwd+bwd)")
    n_p = sum(p.numel() for p in nets.predictor.parameters())
    n_t = sum(p.numel() for p in nets.transformer.parameters())
    print(f"parameters: predictor {n_p:,}, transformer {n_t:,}; threads {args.threads}")


if __name__ == "__main__":
    main()
