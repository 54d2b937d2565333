"""What a spatial transformer costs, measured: ``python -m stnbook.cost.bench {sampler,overhead,bandwidth,all}``.

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
* ``floor``: an ST-CNN step against the work an input-level transformer forces (the classifier's input gradient,
  the localisation net, grid generator and sampler, the update), per Table 1 canvas.
* ``step``: a full training step (forward, backward, Adam) of every Table 1 model on the R, RTS and TC canvases,
  the addition and birds models, under each speed candidate against today's fp32 eager default: channels-last,
  bf16 autocast, both, both at batch 256 (time per 128 images), ``torch.compile`` of the model (two models);
  and, with ``--processes``, two single-thread processes against one two-thread process.
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

from stnbook.paths import results_dir
from stnlib.coords import ALIGN_CORNERS
from stnlib.io import atomic_write_text
from stnlib.sampler import bilinear_sample
from stnlib.train import hardware_info, resolve_device
from stnlib.transforms import get_transform

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
    """Kornia's ``warp_affine`` with theta converted to its pixel-coordinate matrix, or None if not installed."""
    try:
        from kornia.geometry.conversions import denormalize_homography
        from kornia.geometry.transform import warp_affine
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


def _train_step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                   precision: str = "fp32") -> Callable[[], None]:
    from stnlib.train import autocast

    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        with autocast(x.device, precision):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_overhead(device: torch.device, batch: int = 128, rounds: int = 7) -> dict:
    """Training-step time of every ST model relative to its plain classifier, on the experiments' shapes."""
    from stnlib.models import ModelConfig, build_model, default_budget

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
    from stnlib.models import ModelConfig, build_model, default_budget

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


STEP_CANDIDATES = {  # name -> (channels_last, precision, batch multiplier)
    "fp32 eager (baseline)": (False, "fp32", 1),
    "channels-last": (True, "fp32", 1),
    "bf16 autocast": (False, "bf16", 1),
    "channels-last + bf16": (True, "bf16", 1),
    "channels-last + bf16, batch 256": (True, "bf16", 2),
}


def _step_setups() -> list[tuple[str, object]]:
    """(name, ModelConfig) of every model the experiments train, at the experiments' budgets."""
    from stnbook.birds.model import BirdsConfig
    from stnlib.models import ModelConfig, default_budget

    out = []
    for dist, side, pool in (("R", 28, 1), ("RTS", 42, 2), ("TC", 60, 2)):
        size = (side, side)
        budget = default_budget(size, width=32)
        for arch in ("fcn", "cnn"):
            for tf in (None, "affine"):
                cfg = ModelConfig(arch, tf, size, st_pool=pool if tf else 1, param_budget=budget)
                out.append((f"{dist} {cfg.name}", cfg))
    for dist, side, pool in (("R", 28, 1), ("RTS", 42, 2)):
        for tf in (None, "affine"):
            cfg = ModelConfig("cnn", tf, (side, side), st_pool=pool if tf else 1, param_budget=150_000)
            out.append((f"{dist} {cfg.name} 150k", cfg))
    add_budget = default_budget((42, 42), 2, 19, width=32)
    out.append(("addition 2xST-FCN affine", ModelConfig("fcn", "affine", (42, 42), 2, 19, num_transformers=2,
                                                        st_pool=2, param_budget=200_000)))
    out.append(("addition CNN", ModelConfig("cnn", None, (42, 42), 2, 19, param_budget=add_budget)))
    out.append(("birds 2xST", BirdsConfig(num_transformers=2)))
    return out


def _build_for_step(cfg) -> tuple[torch.nn.Module, tuple, int]:
    """(model, one input's shape, number of classes) of a step-benchmark setup."""
    from stnbook.birds.model import BirdsConfig, build_birds_model
    from stnlib.models import build_model

    if isinstance(cfg, BirdsConfig):
        model = build_birds_model(cfg)
        return model, (cfg.in_channels, cfg.in_size, cfg.in_size), cfg.num_classes
    return build_model(cfg), (cfg.in_channels, *cfg.in_size), cfg.num_classes


def _step_input(cfg, n: int, shape: tuple, g: torch.Generator) -> torch.Tensor:
    from stnbook.birds.model import BirdsConfig

    if isinstance(cfg, BirdsConfig):  # the birds models take uint8 images
        return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return torch.rand(n, *shape, generator=g)


def bench_step(device: torch.device, batch: int = 128, rounds: int = 7, compile: bool = False,
               only: str | None = None) -> dict:
    """Training-step time of every model under each of :data:`STEP_CANDIDATES` (interleaved, medians)."""
    from stnlib.train import autocast

    rows = []
    for name, cfg in _step_setups():
        if only and only not in name:
            continue
        fns, compile_s = {}, None
        candidates = dict(STEP_CANDIDATES)
        if compile and name in ("R ST-CNN affine", "RTS ST-CNN affine"):
            candidates["channels-last + bf16 + torch.compile"] = (True, "bf16", 1)
        for cand, (cl, precision, mult) in candidates.items():
            torch.manual_seed(0)
            model, shape, classes = _build_for_step(cfg)
            model = model.to(device)
            if cl:
                model = model.to(memory_format=torch.channels_last)
            forward = model
            if "compile" in cand:
                forward = torch.compile(model)
            g = torch.Generator().manual_seed(0)
            n = batch * mult
            x = _step_input(cfg, n, shape, g).to(device)
            y = torch.randint(0, classes, (n,), generator=g).to(device)
            opt = torch.optim.Adam(model.parameters(), 1e-3)

            def step(forward=forward, opt=opt, x=x, y=y, precision=precision) -> None:
                with autocast(device, precision):
                    out = forward(x)
                    loss = F.cross_entropy(out[0] if isinstance(out, tuple) else out, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            if "compile" in cand:
                t0 = time.perf_counter()
                step()
                compile_s = time.perf_counter() - t0
            fns[cand] = step
        t = interleaved(fns, rounds, 2, device)
        per128 = {k: v / candidates[k][2] for k, v in t.items()}  # seconds per 128 images
        base = per128["fp32 eager (baseline)"]
        rows.append({"model": name, "batch": batch, "ms_per_step_of_128": {k: v * 1e3 for k, v in per128.items()},
                     "speedup_vs_fp32_eager": {k: base / v for k, v in per128.items()},
                     "compile_time_s": compile_s})
        best = max(rows[-1]["speedup_vs_fp32_eager"].items(), key=lambda kv: kv[1])
        print(f"{name:34s} fp32 {base * 1e3:7.1f} ms; " + ", ".join(
            f"{k} {v:.2f}x" for k, v in rows[-1]["speedup_vs_fp32_eager"].items() if k != "fp32 eager (baseline)")
            + f"  (best: {best[0]})", flush=True)
    return {"benchmark": "step", "rows": rows,
            "notes": "time per 128 images of one optimiser step (forward, backward, Adam); ratios against fp32 eager "
                     "in the same run, interleaved round by round; 'batch 256' is timed per 128 images"}


def _steps_per_second(model_name: str, threads: int, seconds: float) -> float:
    """Steps/s of one process training ``model_name`` (a :func:`_step_setups` name) with channels-last + bf16."""
    from stnlib.train import autocast, fast_settings

    torch.set_num_threads(threads)
    cfg = dict(_step_setups())[model_name]
    torch.manual_seed(0)
    model, shape, classes = _build_for_step(cfg)
    fast = fast_settings("cpu")
    if fast["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    x, y = _step_input(cfg, 128, shape, torch.Generator()), torch.randint(0, classes, (128,))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        with autocast("cpu", fast["precision"]):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += 1
    return n / (time.perf_counter() - t0)


def bench_processes(model_name: str = "RTS ST-CNN affine", seconds: float = 20.0) -> dict:
    """Aggregate steps/s of two single-thread processes at once (the baseline), of one process with two threads, and
    of two processes at once with two threads each (on two cores: more threads than cores, as when two test workers
    each keep torch's default thread count)."""
    import subprocess

    def launch(threads: int):
        code = (f"from stnbook.cost.bench import _steps_per_second; "
                f"print(_steps_per_second({model_name!r}, {threads}, {seconds}))")
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                env={**__import__("os").environ, "OMP_NUM_THREADS": str(threads)})

    def together(*threads: int) -> float:
        procs = [launch(t) for t in threads]
        return sum(float(p.communicate()[0].strip().splitlines()[-1]) for p in procs)

    two_rate = together(1, 1)
    one_rate = together(2)
    crowded_rate = together(2, 2)
    return {"model": model_name, "seconds": seconds, "two_single_thread_processes_steps_per_s": two_rate,
            "one_two_thread_process_steps_per_s": one_rate,
            "two_two_thread_processes_steps_per_s": crowded_rate,
            "ratio_two_processes_vs_two_threads": two_rate / one_rate,
            "ratio_two_two_thread_processes_vs_two_single_thread": crowded_rate / two_rate}


def bench_floor(device: torch.device, batch: int = 128, rounds: int = 7) -> dict:
    """An ST-CNN step against the work a transformer at the input cannot avoid, per Table 1 canvas.

    The floor is the sum of the parts timed alone, each forward and backward: the classifier on the
    transformer's (pooled) output *including the gradient of its input* (a plain CNN never computes it), the
    localisation net with its regression layer, the grid generator and sampler, and the Adam update of every
    parameter. ``st_over_floor`` near 1 means the module adds nothing beyond that work; ``st_over_cnn`` is
    the paper's comparison (ST-CNN against the plain CNN of the same budget). Models run with the trainer's
    default precision and memory format for the device (:func:`~stnlib.train.fast_settings`).
    """
    from stnlib.models import ModelConfig, build_model, default_budget
    from stnlib.train import autocast, fast_settings

    rows = []
    for name, side, pool in (("R", 28, 1), ("RTS", 42, 2), ("TC", 60, 2)):
        size = (side, side)
        budget = default_budget(size, width=32)
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, 1, *size, generator=g).to(device)
        y = torch.randint(0, 10, (batch,), generator=g).to(device)
        models = {}
        for tf in (None, "affine"):
            torch.manual_seed(0)
            m = build_model(ModelConfig("cnn", tf, size, st_pool=pool if tf else 1, param_budget=budget)).to(device)
            fast = fast_settings(device, m)
            if fast["channels_last"]:
                m = m.to(memory_format=torch.channels_last)
            models[tf] = m
        prec = fast["precision"]
        st = models["affine"]
        cnn_step = _train_step_fn(models[None], x, y, prec)
        st_step = _train_step_fn(st, x, y, prec)
        with torch.no_grad():
            theta0 = st.st.localise(x)
            warped0 = st.st.sample(x, theta0)
        opt = torch.optim.Adam(st.parameters(), 1e-3)
        for p in st.parameters():
            p.grad = torch.zeros_like(p)

        def classifier_part():
            w = warped0.clone().requires_grad_(True)
            with autocast(device, prec):
                loss = F.cross_entropy(st.classify(w), y)
            loss.backward()

        def loc_part():
            with autocast(device, prec):
                theta = st.st.localise(x)
            theta.sum().backward()

        def sampler_part():
            theta = theta0.clone().requires_grad_(True)
            st.st.sample(x, theta).sum().backward()

        parts = {"ST-CNN step": st_step, "CNN step": cnn_step, "classifier incl. input gradient": classifier_part,
                 "localisation net": loc_part, "grid generator + sampler": sampler_part, "Adam update": opt.step}
        t = interleaved(parts, rounds, 3, device)
        floor = sum(v for k, v in t.items() if k not in ("ST-CNN step", "CNN step"))
        rows.append({"setup": name, "input": [1, side, side], "batch": batch, "precision": prec,
                     "ms": {k: v * 1e3 for k, v in t.items()}, "floor_ms": floor * 1e3,
                     "st_over_floor": t["ST-CNN step"] / floor, "st_over_cnn": t["ST-CNN step"] / t["CNN step"],
                     "floor_over_cnn": floor / t["CNN step"]})
        print(f"{name}: ST-CNN {t['ST-CNN step'] * 1e3:.1f} ms, CNN {t['CNN step'] * 1e3:.1f} ms, floor "
              f"{floor * 1e3:.1f} ms -> ST/floor {rows[-1]['st_over_floor']:.2f}x, ST/CNN {rows[-1]['st_over_cnn']:.2f}x",
              flush=True)
    return {"benchmark": "floor", "rows": rows}


def save(result: dict, name: str, out: Path | None = None) -> Path:
    result = {**result, "hardware": hardware_info(resolve_device("auto")), "command": "python -m stnbook.cost.bench "
              + " ".join(sys.argv[1:]), "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    path = (out or results_dir() / "bench") / f"{name}.json"
    atomic_write_text(path, json.dumps(result, indent=1))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stnbook.cost.bench", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["sampler", "overhead", "breakdown", "bandwidth", "step", "floor", "all"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile path")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON (default results/bench)")
    parser.add_argument("--only", default=None, help="step: only the models whose name contains this")
    parser.add_argument("--processes", action="store_true",
                        help="step: also two single-thread processes vs one two-thread process (CPU)")
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
    if args.what in ("step", "all"):
        r = bench_step(device, rounds=args.rounds, compile=not args.no_compile, only=args.only)
        if args.processes and device.type == "cpu":
            r["processes"] = bench_processes()
            print(r["processes"])
        print("wrote", save(r, f"step-{device.type}", args.out))
    if args.what in ("floor", "all"):
        r = bench_floor(device, rounds=args.rounds)
        print("wrote", save(r, f"floor-{device.type}", args.out))
    if args.what in ("overhead", "all"):
        r = bench_overhead(device, rounds=args.rounds)
        for row in r["rows"]:
            print(row["setup"], ", ".join(f"{k} {v:.2f}x" for k, v in row["ratio_vs_plain"].items()))
        print("wrote", save(r, f"overhead-{device.type}", args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
