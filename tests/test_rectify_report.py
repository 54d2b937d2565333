"""The rectify chapter's comparison of recipe variants and of the distortion curriculum, on hand-made records."""

from stnbook.rectify.report import (
    ramp_html,
    ramp_key_numbers,
    rectified,
    size_html,
    size_key_numbers,
    variant_key_numbers,
    variants_html,
)


def evals(*rows):
    return [{"step": s, "rect_slope": sl, "error": e} for s, sl, e in rows]


def test_variant_numbers_compare_at_the_same_steps():
    progress = {
        "full": {"description": "recipe", "state": "finished", "step": 20, "of": 20,
                 "evals": evals((10, -0.2, 1.5), (20, -0.4, 1.0)),
                 "final": {"rectification": {"slope": -0.45, "r": -0.8}, "test_error": 0.9}},
        "loclr10": {"description": "fast", "state": "stopped", "step": 10, "of": 20, "evals": evals((10, -0.05, 2.0)),
                    "final": None},
        "narrow": {"description": "narrow", "state": "finished", "step": 20, "of": 20,
                   "evals": evals((10, -0.3, 1.8), (20, -0.35, 0.9)),
                   "final": {"rectification": {"slope": -0.5, "r": -0.85}, "test_error": 1.2}},
    }
    k = variant_key_numbers(progress, step=10)
    assert (k["rect_var_full"], k["rect_var_loclr10"], k["rect_var_narrow"]) == ("0.20", "0.05", "0.30")
    assert k["rect_var_loclr3"] == "n/a" and k["rect_var_best"] == "narrow"
    # narrow vs recipe: steeper at step 10 only; higher error at step 10 only
    assert (k["rect_var_narrow_more"], k["rect_var_narrow_worse"], k["rect_var_common"]) == ("1", "1", "2")
    assert k["rect_var_final_cmp"] == "higher" and k["rect_var_final_narrow"] == "0.50 (r 0.85, 1.20% error)"
    assert variant_key_numbers({}, step=10)["rect_var_final_cmp"] == "n/a"
    html = variants_html(progress, at=(10, 20))
    assert "-0.05 (2.00%)" in html and "&ndash;" in html  # loclr10 never reached step 20


def run(slope, r, error, intercept=-2.0):
    return {"test_error": error, "steps": 60_000, "wall_time_s": 600.0,
            "rectification": {"slope": slope, "r": r, "intercept": intercept, "residual_sd": 12.0},
            "eval_history": [{"step": 5_000, "rect_slope": slope / 2}]}


def test_rectified_needs_both_the_slope_and_the_correlation():
    assert rectified({"slope": -0.92, "r": -0.95}) and rectified({"slope": 1.2, "r": 0.9})
    assert not rectified({"slope": -0.92, "r": -0.85})  # follows the angle on average, too loosely
    assert not rectified({"slope": -0.6, "r": -0.99})  # tightly, but only part of the way
    assert not rectified({"slope": -1.3, "r": -0.99})  # overshoots


def test_ramp_numbers_name_each_profile_and_the_target():
    results = {"R-st-fcn-affine": {"full": run(-0.63, -0.89, 3.22, -15.2), "ramp": run(-0.95, -0.96, 2.5)},
               "R-st-cnn-affine": {"full": run(-0.53, -0.81, 0.91)},
               "R180-st-fcn-affine": {"ramp": run(-0.9, -0.93, 4.0)}}
    k = ramp_key_numbers(results)
    assert (k["noramp_fcn_slope"], k["noramp_fcn_r"], k["noramp_fcn_intercept"], k["noramp_fcn_met"]) == \
        ("0.63", "0.89", "15", "does not meet")
    assert (k["ramp_fcn_slope"], k["ramp_fcn_error"], k["ramp_fcn_met"], k["ramp_fcn_minutes"]) == \
        ("0.95", "2.50", "meets", "10")
    assert k["ramp_cnn_slope"] == k["ramp_cnn_met"] == k["ramp_cnn_vs_paper"] == "n/a"
    assert (k["r180_ramp_fcn_slope"], k["r180_ramp_cnn_slope"]) == ("0.90", "n/a")
    assert (k["ramp_start"], k["ramp_end"]) == ("3,000", "24,000")  # 5% and 40% of the 60,000 steps
    html = ramp_html(results)
    assert html.count("<tr") == 1 + 4 and ">yes<" in html and ">no<" in html


def test_size_numbers_follow_each_run_state():
    final = {"rectification": {"slope": -0.85, "r": -0.93}, "test_error": 0.8}
    small = {"state": "finished", "step": 20, "of": 20, "params": 42_618, "evals": evals((10, -0.3, 2.0), (20, -0.8, 0.9)),
             "final": {"rectification": {"slope": -0.82, "r": -0.92}, "test_error": 0.91}}
    progress = {
        "R-st-fcn-affine": {"ramp": small, "ramp-150k": {"state": "finished", "step": 20, "of": 20, "params": 149_936,
                                                         "evals": evals((10, -0.5, 1.5), (20, -0.85, 0.8)),
                                                         "final": final}},
        "R-st-cnn-affine": {"ramp": small, "ramp-150k": {"state": "stopped", "step": 12, "of": 20, "params": 147_555,
                                                         "evals": evals((10, -0.2, 1.2)), "final": None}},
    }
    k = size_key_numbers(progress)
    assert k["size_fcn"] == ("meets the target at 150k parameters: slope 0.85 (r 0.93) at 0.80% test error, "
                             "against 0.82 (r 0.92) at 0.91% with 43k")
    # still training: compared with the other size at the latest step both reached
    assert k["size_cnn"] == ("has trained 12 of its 20 steps at 150k parameters; at step 10 its slope on the probe's "
                             "images is 0.20 at 1.20% test error, against 0.30 at 2.00% with 43k at the same step")
    assert size_key_numbers({})["size_cnn"] == "has not been trained at 150k parameters"
    html = size_html(progress, at=(10, 20))
    assert html.count("<tr") == 1 + 4 and "-0.20 (1.20%)" in html and "12 of 20" in html
    assert "-0.85 (r -0.93, 0.80%): yes" in html
