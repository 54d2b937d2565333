"""Throughput of stnlib's batched distortion generator vs a per-sample torchvision/PIL RTS pipeline (CPU).

    python -m stnbook.cost.bench_distortions [--n 10000] [--batch 256] [--repeats 3] [--threads 1,2]

Batched: ``sample_distortion`` + ``apply_distortion`` (one grid + bilinear_sample per batch) for RTS,
P, E and TC on MNIST training digits. Per-sample: the equivalent RTS made the usual way, one PIL image
at a time: pad to 42 x 42, ``torchvision.transforms.functional.affine`` (random angle, scale,
translation; bilinear), ``to_tensor``, then ``torch.stack`` per batch. Each pipeline runs once to
warm up, then ``--repeats`` times; the best (least disturbed) run is reported, in images per second.
Everything is timed for each torch thread count of ``--threads`` (default: 1 and torch's default):
on a small machine shared with other jobs, OpenMP threads that wait for a busy core can make small
batched ops tens of times slower than one thread, so the thread count is part of the result.
Results go to ``results/bench/distortions.json`` (written atomically) with the hardware they ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stnlib.data.distortions import apply_distortion, as_image_batch, sample_distortion  # noqa: E402


def load_digits(n: int) -> tuple[torch.Tensor, str]:
    """(n, 28, 28) uint8 MNIST training digits, or random ones (and a note) if the files are missing."""
    try:
        from stnbook.paths import load_mnist

        images, _ = load_mnist("train")
        reps = -(-n // len(images))
        return images.repeat(reps, 1, 1)[:n], "mnist-train"
    except Exception as e:  # the benchmark measures speed, not accuracy: random digits time the same
        print(f"MNIST not available ({type(e).__name__}); timing random digits instead", file=sys.stderr)
        return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)), "random"


def batched(kind: str, images: torch.Tensor, batch: int) -> None:
    g = torch.Generator().manual_seed(0)
    for start in range(0, len(images), batch):
        x = as_image_batch(images[start:start + batch])
        apply_distortion(kind, x, sample_distortion(kind, x.shape[0], g))


def per_sample_rts(images: torch.Tensor, batch: int) -> None:
    import torchvision.transforms.functional as TF
    from PIL import Image
    from torchvision.transforms import InterpolationMode

    rng = random.Random(0)
    arrays = images.numpy()
    for start in range(0, len(arrays), batch):
        out = []
        for a in arrays[start:start + batch]:
            s = rng.uniform(0.7, 1.2)
            half = max(0.0, (42 - 28 * s) / 2)
            img = TF.pad(Image.fromarray(a), 7)  # 42 x 42, digit centred
            img = TF.affine(img, angle=rng.uniform(-45, 45), translate=[rng.uniform(-half, half), rng.uniform(-half, half)],
                            scale=s, shear=[0.0], interpolation=InterpolationMode.BILINEAR)
            out.append(TF.to_tensor(img))
        torch.stack(out)


def best_rate(fn, n: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / min(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="images per timed run")
    ap.add_argument("--batch", type=int, default=256, help="batch size of the batched generator")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per pipeline (best is reported)")
    ap.add_argument("--threads", type=str, default=None,
                    help="comma-separated torch thread counts to time (default: 1 and torch's default)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "distortions.json")
    args = ap.parse_args(argv)

    default_threads = torch.get_num_threads()
    threads = ([int(v) for v in args.threads.split(",")] if args.threads
               else sorted({1, default_threads}))
    images, source = load_digits(args.n)
    runs = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        print(f"torch threads: {n_threads}")
        rates = {}
        for kind in ("RTS", "P", "E", "TC"):
            rates[kind] = best_rate(lambda: batched(kind, images, args.batch), args.n, args.repeats)
            print(f"  batched {kind:>3} (batch {args.batch}): {rates[kind]:12,.0f} images/s")
        pil = best_rate(lambda: per_sample_rts(images, args.batch), args.n, args.repeats)
        ratio = rates["RTS"] / pil
        print(f"  per-sample RTS (torchvision on PIL): {pil:12,.0f} images/s")
        print(f"  RTS speed-up, batched / per-sample: {ratio:.1f}x")
        runs.append({
            "torch_threads": n_threads,
            "batched_images_per_s": {k: round(v, 1) for k, v in rates.items()},
            "per_sample_torchvision_pil_rts_images_per_s": round(pil, 1),
            "rts_speedup_batched_over_per_sample": round(ratio, 2),
        })
    torch.set_num_threads(default_threads)

    import torchvision

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    result = {
        "benchmark": "distortions",
        "n_images": args.n, "batch_size": args.batch, "repeats": args.repeats, "statistic": "best of repeats",
        "digits": source,
        "runs": runs,
        "hardware": {
            "device": "cpu", "cpu_count": os.cpu_count(),
            "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_default_threads": default_threads, "load_average_1_5_15min": load,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
        },
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = json.dumps(result, indent=2) + "\n"
    try:
        from stnlib.io import atomic_write_text
    except ImportError:  # stnlib without io.py: the same temp-file-then-rename write
        def atomic_write_text(path, data):
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(data)
            os.replace(tmp, path)
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
