"""What a spatial transformer costs, measured: ``python -m stnlib.bench {sampler,overhead,bandwidth,all}``.

Every benchmark times the competing paths in the *same* run, interleaved round by round (A B C A B C ...)
so that a load change on a shared machine hits all of them alike, and reports the median of the rounds
and ratios against a baseline. Results go to ``results/bench/<name>.json`` with the hardware. These are
measurements, not tests: nothing here asserts a speed.

* ``sampler``: forward and forward+backward images/s of an affine warp (grid generation + bilinear
  sampling) for 1-channel 28/42/60 px and 64-channel 28 px batches: stnlib's path (one matmul against a
  shared base grid + ``grid_sample``), ``F.affine_grid`` + ``F.grid_sample`` eager, kornia's
  ``warp_affine`` (when installed) and ``torch.compile`` of stnlib's path; plus the bytes each moves
  against this machine's measured memory bandwidth.
* ``overhead``: one training step of ST-CNN vs CNN (and ST-FCN vs FCN) on each Table 1 canvas, and of the
  2xST-FCN vs FCN on the addition input: the paper's "very little time overhead" claim.
* ``breakdown``: where one ST-CNN training step spends its time (localisation net, grid generator,
  sampler, classifier, backward).
* ``bandwidth``: the memory bandwidth itself (large tensor copy), the physical limit of the sampler.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from .coords import ALIGN_CORNERS
from .io import atomic_write_text
from .paths import results_dir
from .sampler import bilinear_sample
from .train import hardware_info, resolve_device
from .transforms import get_transform

SAMPLER_SHAPES = [(1, 28), (1, 42), (1, 60), (64, 28)]  # (channels, side)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, inner: int, device: torch.device,
                warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin so load changes hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def memory_bandwidth(device: torch.device, mib: int = 256, rounds: int = 5) -> float:
    """Copy bandwidth in GB/s (bytes read + written per second) of a ``mib`` MiB tensor clone."""
    x = torch.empty(mib * 2 ** 20 // 4, dtype=torch.float32, device=device).uniform_()
    t = interleaved({"copy": lambda: x.clone()}, rounds, 1, device)["copy"]
    return 2 * x.numel() * 4 / t / 1e9


def stnlib_affine_warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The library's path: grid by one matmul against a shared base grid, then bilinear sampling."""
    return bilinear_sample(x, get_transform("affine").grid(theta, x.shape[-2:], check_finite=False))


def torch_affine_warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The textbook path: ``F.affine_grid`` (a B x H x W x 3 base grid, B small matmuls) + ``F.grid_sample``."""
    grid = F.affine_grid(theta.view(-1, 2, 3), list(x.shape), align_corners=ALIGN_CORNERS)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS)


def kornia_affine_warp():
    """kornia's ``warp_affine`` with theta converted to its pixel-coordinate matrix, or None if not installed."""
    try:
        from kornia.geometry.transform import warp_affine
        from kornia.geometry.conversions import denormalize_homography
    except ImportError:
        return None

    def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # kornia maps source -> destination in pixels; build it from our output -> input normalised theta
        n = x.shape[0]
        a = torch.cat([theta.view(-1, 2, 3), theta.new_tensor([0, 0, 1.0]).expand(n, 1, 3)], 1)
        m = denormalize_homography(torch.linalg.inv(a), (h, w), (h, w))
        return warp_affine(x, m[:, :2], (h, w), mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS)

    return warp


def bench_sampler(device: torch.device, batch: int = 256, rounds: int = 7, compile: bool = True) -> dict:
    """Forward and forward+backward images/s of each affine-warp path for :data:`SAMPLER_SHAPES`."""
    paths: dict[str, Callable] = {"stnlib": stnlib_affine_warp, "torch eager": torch_affine_warp}
    kw = kornia_affine_warp()
    if kw is not None:
        paths["kornia"] = kw
    compile_s = None
    if compile:
        compiled = torch.compile(stnlib_affine_warp, dynamic=False)
        paths["stnlib + torch.compile"] = compiled
    bw = memory_bandwidth(device)
    rows = []
    for c, side in SAMPLER_SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, c, side, side, generator=g).to(device)
        theta = (torch.tensor([1.0, 0, 0, 0, 1, 0]) + 0.1 * torch.randn(batch, 6, generator=g)).to(device)
        ref = torch_affine_warp(x, theta)
        agree = {}
        for name, fn in paths.items():
            t0 = time.perf_counter()
            out = fn(x, theta)  # first call: compiles where it compiles
            if name == "stnlib + torch.compile" and compile_s is None:
                compile_s = time.perf_counter() - t0
            agree[name] = float((out - ref).abs().max())
        xg = x.clone().requires_grad_(True)
        tg = theta.clone().requires_grad_(True)

        def fwd(fn):
            return lambda: fn(x, theta)

        def fwd_bwd(fn):
            def step():
                xg.grad = tg.grad = None
                fn(xg, tg).sum().backward()
            return step

        inner = max(1, int(2e6 // (batch * c * side * side)))
        with torch.no_grad():
            f = interleaved({k: fwd(fn) for k, fn in paths.items()}, rounds, inner, device)
        fb = interleaved({k: fwd_bwd(fn) for k, fn in paths.items()}, rounds, inner, device)
        # bytes a perfect forward must move: read the input and the grid, write the grid and the output
        moved = batch * (c * side * side * 4 + 2 * side * side * 2 * 4 + c * side * side * 4)
        rows.append({
            "channels": c, "side": side, "batch": batch,
            "forward_images_per_s": {k: batch / t for k, t in f.items()},
            "forward_backward_images_per_s": {k: batch / t for k, t in fb.items()},
            "forward_speedup_vs_torch_eager": {k: f["torch eager"] / t for k, t in f.items()},
            "forward_backward_speedup_vs_torch_eager": {k: fb["torch eager"] / t for k, t in fb.items()},
            "stnlib_forward_bandwidth_fraction": moved / f["stnlib"] / 1e9 / bw,
            "max_abs_difference_vs_torch_eager": agree,
        })
    notes = ("kornia's warp_affine normalises pixel coordinates as align_corners=True whatever its flag, so its "
             "output differs from stnlib's by that half-pixel convention (max_abs_difference); the work is the same. "
             "A bandwidth fraction above 1 means the batch is served from cache, not DRAM.")
    return {"benchmark": "sampler", "memory_bandwidth_GBps": bw, "compile_time_s": compile_s, "rows": rows,
            "notes": notes}


def _train_step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_overhead(device: torch.device, batch: int = 128, rounds: int = 7) -> dict:
    """Training-step time of every ST model relative to its plain classifier, on the experiments' shapes."""
    from .models import ModelConfig, build_model, default_budget

    setups = [("R", (28, 28), 1, 1, 10, 1), ("RTS", (42, 42), 1, 2, 10, 1), ("TC", (60, 60), 1, 2, 10, 1),
              ("addition", (42, 42), 2, 2, 19, 2)]
    rows = []
    for name, size, ch, pool, classes, n_st in setups:
        budget = default_budget(size, ch, classes, width=32)
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, ch, *size, generator=g).to(device)
        y = torch.randint(0, classes, (batch,), generator=g).to(device)
        fns, params = {}, {}
        for arch in ("fcn", "cnn"):
            for tf in (None, "affine"):
                cfg = ModelConfig(arch, tf, size, ch, classes, num_transformers=n_st if tf else 1,
                                  st_pool=pool if tf else 1, param_budget=budget)
                torch.manual_seed(0)
                model = build_model(cfg).to(device)
                key = cfg.name
                fns[key] = _train_step_fn(model, x, y)
                params[key] = sum(p.numel() for p in model.parameters())
        t = interleaved(fns, rounds, 3, device)
        ratios = {}
        for k in t:
            base = "CNN" if "CNN" in k else "FCN"
            ratios[k] = t[k] / t[base]
        rows.append({"setup": name, "input": [ch, *size], "batch": batch, "step_ms": {k: v * 1e3 for k, v in t.items()},
                     "ratio_vs_plain": ratios, "params": params})
    return {"benchmark": "overhead", "rows": rows}


def bench_breakdown(device: torch.device, batch: int = 128, rounds: int = 7) -> dict:
    """Where an ST-CNN training step spends its time (RTS shapes): each forward part, then the backward."""
    from .models import ModelConfig, build_model, default_budget

    size = (42, 42)
    torch.manual_seed(0)
    model = build_model(ModelConfig("cnn", "affine", size, st_pool=2, param_budget=default_budget(size, width=32)))
    model = model.to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, *size, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    st = model.st
    with torch.no_grad():
        feats = st.loc_net(x)
        theta = st.head(feats.flatten(1))
        grid = st.transform.grid(theta, size, check_finite=False)
        warped = bilinear_sample(x, grid)
        pooled = model.normalize(model.pool(warped))
    step = _train_step_fn(model, x, y)
    parts = {
        "localisation net": lambda: st.head(st.loc_net(x).flatten(1)),
        "grid generator": lambda: st.transform.grid(theta, size, check_finite=False),
        "sampler": lambda: bilinear_sample(x, grid),
        "classifier": lambda: model.classifier(pooled),
    }
    with torch.no_grad():
        fwd = interleaved(parts, rounds, 3, device)
    total = interleaved({"training step": step}, rounds, 3, device)["training step"]
    rest = total - sum(fwd.values())
    return {"benchmark": "breakdown", "model": "ST-CNN affine, RTS 42x42, batch %d" % batch,
            "ms": {**{k: v * 1e3 for k, v in fwd.items()}, "backward + optimiser": rest * 1e3},
            "training_step_ms": total * 1e3}


def save(result: dict, name: str, out: Path | None = None) -> Path:
    result = {**result, "hardware": hardware_info(resolve_device("auto")), "command": "python -m stnlib.bench "
              + " ".join(sys.argv[1:]), "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    path = (out or results_dir() / "bench") / f"{name}.json"
    atomic_write_text(path, json.dumps(result, indent=1))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stnlib.bench", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["sampler", "overhead", "breakdown", "bandwidth", "all"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile path")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON (default results/bench)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.what in ("bandwidth", "all"):
        bw = memory_bandwidth(device)
        print(f"memory bandwidth: {bw:.1f} GB/s")
        save({"benchmark": "bandwidth", "memory_bandwidth_GBps": bw}, f"bandwidth-{device.type}", args.out)
    if args.what in ("sampler", "all"):
        r = bench_sampler(device, rounds=args.rounds, compile=not args.no_compile)
        for row in r["rows"]:
            fb = ", ".join(f"{k} {v:.2f}x" for k, v in row["forward_backward_speedup_vs_torch_eager"].items())
            f = ", ".join(f"{k} {v:.2f}x" for k, v in row["forward_speedup_vs_torch_eager"].items())
            print(f"{row['channels']:2d}ch {row['side']}px  forward vs torch eager: {f}\n           fwd+bwd: {fb}")
        print("wrote", save(r, f"sampler-{device.type}", args.out))
    if args.what in ("breakdown", "all"):
        r = bench_breakdown(device, rounds=args.rounds)
        print(", ".join(f"{k} {v:.1f} ms" for k, v in r["ms"].items()))
        print("wrote", save(r, f"breakdown-{device.type}", args.out))
    if args.what in ("overhead", "all"):
        r = bench_overhead(device, rounds=args.rounds)
        for row in r["rows"]:
            print(row["setup"], ", ".join(f"{k} {v:.2f}x" for k, v in row["ratio_vs_plain"].items()))
        print("wrote", save(r, f"overhead-{device.type}", args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
