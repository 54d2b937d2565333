"""The units of the Table 1 models that never fire: what a learning-rate warm-up gives back.

Adam at its full rate from the first step switches off ReLU units for good; :func:`stnlib.analysis.silent_units`
counts them on the committed models (finished runs) and checkpoints (runs under way), so the chapter can set the
runs with and without a warm-up side by side.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stnbook.figures import html_table
from stnlib.analysis import silent_units

CLASSIFIER, LOC_NET = "classifier.", "st.loc_net."


def load_run(cell: str, profile: str) -> tuple[torch.nn.Module, dict] | None:
    """The model of one Table 1 run in eval mode on the CPU, from its artifact when finished or else from its
    committed checkpoint (each file read once), with ``{"state", "step", "of", "error", "error_step", "params"}``
    (``error``: its latest evaluation, made at ``error_step``); None when the run has neither."""
    from stnbook.experiments import (
        artifact_dir,
        cell_model,
        get_cells,
        get_experiment,
        get_profile,
        load_cell,
        run_dir_of,
    )
    from stnlib.io import safe_torch_load

    c = get_cells("table1", [cell])[0]
    prof = get_profile("table1", profile)
    ckpt = run_dir_of(c, profile) / "checkpoint.pt"
    if (artifact_dir(c, profile) / "metrics.json").exists():
        metrics, model, _ = load_cell(c, profile)
        state, step, evals = "finished", metrics["steps"], metrics["eval_history"]
    elif ckpt.exists():
        saved = safe_torch_load(ckpt, map_location="cpu")
        model = get_experiment("table1").build(cell_model(c, prof))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved["model"].items()})
        state, step, evals = "in progress", int(saved["step"]), saved["eval_history"]
    else:
        return None
    return model.eval(), {"state": state, "step": step, "of": prof.steps,
                          "error": evals[-1]["error"] if evals else None,
                          "error_step": evals[-1]["step"] if evals else None,
                          "params": sum(p.numel() for p in model.parameters())}


def silent_row(cell: str, profile: str, model: torch.nn.Module, info: dict, x: torch.Tensor) -> dict:
    """One run's row: ``cell``, ``profile``, the fields of ``info`` (:func:`load_run`), and the ReLU layers of
    its classifier (``layers``) and of its localisation net (``loc_layers``, empty without one), each
    ``{"units", "silent", "spatial"}`` in the order they run, counted on the inputs ``x``."""
    found = silent_units(model, x)
    pick = lambda prefix: [{k: u[k] for k in ("units", "silent", "spatial")} for u in found
                           if u["layer"].startswith(prefix)]
    return {"cell": cell, "profile": profile, **info, "layers": pick(CLASSIFIER), "loc_layers": pick(LOC_NET)}


def silent_rows(runs: Sequence[tuple[str, str]], n: int | None = 512) -> list[dict]:
    """:func:`silent_row` of each (cell, profile) run that exists, on the first ``n`` images of the cell's fixed
    test set (all of them with None); runs with neither an artifact nor a checkpoint are left out."""
    from stnbook.table1.report import test_set

    rows = []
    for cell, profile in runs:
        got = load_run(cell, profile)
        if got is not None:
            rows.append(silent_row(cell, profile, *got, test_set(cell.split("-")[0], n)["x"]))
    return rows


def _count(layer: dict | None) -> str:
    if layer is None:
        return "&ndash;"
    share = layer["silent"] / layer["units"]
    text = f"{layer['silent']} of {layer['units']} {'channels' if layer['spatial'] else 'units'} ({share:.0%})"
    return f"<b>{text}</b>" if share >= 0.5 else text


def silent_html(rows: list[dict]) -> str:
    """The rows as a table: the run (profile, parameters, how far it has got), its latest test error, and the
    silent units of the classifier's two hidden layers and of the localisation net's second layer (bold: half or
    more never fire)."""
    body = []
    for r in rows:
        state = "finished" if r["state"] == "finished" else f"step {r['step']:,} of {r['of']:,}"
        error = "n/a" if r["error"] is None else (f"{r['error']:.2f}%" if r["state"] == "finished"
                                                   else f"{r['error']:.2f}% (step {r['error_step']:,})")
        layer = lambda layers, k: layers[k] if len(layers) > k else None
        body.append([r["cell"], f"{r['profile']}, {r['params'] / 1000:.0f}k parameters, {state}", error,
                     _count(layer(r["layers"], 0)), _count(layer(r["layers"], 1)), _count(layer(r["loc_layers"], 1))])
    return html_table(["cell", "run", "test error", "classifier, 1st layer", "classifier, 2nd layer",
                       "localisation net, 2nd layer"], body)


def silent_key_numbers(rows: list[dict], prefix: str = "silent", loc_profile: str = "adam",
                       same_step: dict[str, dict] | None = None) -> dict[str, str]:
    """Keys ``<prefix>_<cell>_<profile>`` (dashes as underscores): the classifier layer with the largest share of
    silent units, as "k of n"; ``<prefix>_..._error``: the run's latest test error, made at step ``..._step``
    (with thousands separators); ``<prefix>_..._result``: the same as a phrase that says whether the run has
    finished (:func:`result_phrase`); ``<prefix>_..._loc``: the localisation net's second layer as "k of n", where
    the run has one; ``<prefix>_loc_min`` / ``_loc_max``: the range of its silent share (%) over the rows of
    ``loc_profile`` that have one ("n/a" without). With ``same_step`` (metrics by cell of the runs of
    ``loc_profile``), ``<prefix>_..._ref`` for each row of another profile: the ``loc_profile`` run's error at the
    row's latest evaluation step (:func:`error_at`).

    Examples:
        >>> row = {"cell": "TC-fcn", "profile": "adam-400k", "state": "finished", "step": 60_000, "of": 60_000,
        ...        "error": 25.9, "error_step": 60_000, "layers": [
        ...     {"units": 108, "silent": 63, "spatial": False}, {"units": 108, "silent": 1, "spatial": False}],
        ...     "loc_layers": []}
        >>> k = silent_key_numbers([row])
        >>> k["silent_TC_fcn_adam_400k"], k["silent_TC_fcn_adam_400k_error"], k["silent_TC_fcn_adam_400k_step"]
        ('63 of 108', '25.90', '60,000')
        >>> k["silent_TC_fcn_adam_400k_result"]
        'finished at 25.90% after 60,000 steps'
        >>> silent_key_numbers([{**row, "state": "in progress", "step": 41_200, "of": 60_000, "error": 1.5,
        ...                      "error_step": 40_000}])["silent_TC_fcn_adam_400k_result"]
        'was at 1.50% at step 40,000 of 60,000 when this page was built (the run goes on)'
        >>> k["silent_loc_min"]
        'n/a'
    """
    out = {}
    for r in rows:
        key = f"{prefix}_{r['cell']}_{r['profile']}".replace("-", "_")
        worst = max(r["layers"], key=lambda u: u["silent"] / u["units"])
        out[key] = f"{worst['silent']} of {worst['units']}"
        out[f"{key}_error"] = "n/a" if r["error"] is None else f"{r['error']:.2f}"
        out[f"{key}_step"] = "n/a" if r["error"] is None else f"{r['error_step']:,}"
        out[f"{key}_result"] = result_phrase(r)
        if same_step is not None and r["profile"] != loc_profile:
            out[f"{key}_ref"] = error_at(same_step.get(r["cell"]), r["error_step"])
        if len(r["loc_layers"]) > 1:
            out[f"{key}_loc"] = f"{r['loc_layers'][1]['silent']} of {r['loc_layers'][1]['units']}"
    loc = [r["loc_layers"][1]["silent"] / r["loc_layers"][1]["units"] for r in rows
           if len(r["loc_layers"]) > 1 and r["profile"] == loc_profile]
    out[f"{prefix}_loc_min"] = f"{min(loc):.0%}" if loc else "n/a"
    out[f"{prefix}_loc_max"] = f"{max(loc):.0%}" if loc else "n/a"
    return out


def result_phrase(row: dict) -> str:
    """Where a run stands, as the end of a sentence: "finished at 0.65% after 60,000 steps", or for a run under
    way its latest evaluation, "was at ... at step k of n when this page was built (the run goes on)"."""
    if row["error"] is None:
        return f"has no evaluation yet (step {row['step']:,} of {row['of']:,})"
    if row["state"] == "finished":
        return f"finished at {row['error']:.2f}% after {row['step']:,} steps"
    return (f"was at {row['error']:.2f}% at step {row['error_step']:,} of {row['of']:,} when this page was built "
            f"(the run goes on)")


def error_at(metrics: dict | None, step: int | None) -> str:
    """A run's test error at its evaluation of ``step`` (two decimals), to set beside another run's at the same
    step; "n/a" without the run or an evaluation there.

    Examples:
        >>> m = {"eval_history": [{"step": 5_000, "error": 2.345}, {"step": 10_000, "error": 1.5}]}
        >>> error_at(m, 5_000), error_at(m, 7_000), error_at(None, 5_000)
        ('2.35', 'n/a', 'n/a')
    """
    found = {e["step"]: e["error"] for e in (metrics or {}).get("eval_history") or []}
    return f"{found[step]:.2f}" if step in found else "n/a"
