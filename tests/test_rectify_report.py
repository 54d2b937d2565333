"""The rectify chapter's comparison of recipe variants, on hand-made progress records."""

from stnbook.rectify.report import variant_key_numbers, variants_html


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
