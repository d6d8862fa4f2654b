"""The summary rows of a results file that embeds `fair_classifier.py` reports (e.g.
experiments/results/fair_classifier_regime_diga_edits_only.json), recomputed from its runs: the numbers a README
table quotes, traceable to the per-seed rows they come from.

    python experiments/fair_classifier_summary.py experiments/results/fair_classifier_regime_diga_edits_only.json
    python experiments/fair_classifier_summary.py FILE --check   # exit 1 when the stored summary differs

A row per (variant, pair, seeds): seeds 0-2 (the goal's three) and, where a variant ran more, all of its seeds;
sample sd (ddof 1); cuts are 1 - mean(method) / mean(baseline).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import fair_classifier

PAIRS = (("Smiling", "gender"), ("Eyeglasses", "Young"))


def summarise(runs: list[dict], target: str, protected: str, seeds: set[int], method: str = "diga") -> dict | None:
    """Baseline vs `method` over the seeds both ran (None below two seeds): fair_classifier.summarise's means, sds
    and cuts, in this file's row schema, plus the per-seed cuts."""
    deo = f"deo_{target}_{protected}"
    pick = {m: {r["seed"]: r for r in runs if r["target"] == target and r["method"] == m and r["seed"] in seeds}
            for m in ("baseline", method)}
    common = sorted(set(pick["baseline"]) & set(pick[method]))
    if len(common) < 2:
        return None
    B, G = fair_classifier.summarise([pick[m][s] for m in ("baseline", method) for s in common])
    g = [pick[method][s] for s in common]
    return {"target": target, "protected": protected, "seeds": common,
            "baseline_deo": B["deo"], "deo": G["deo"], "deo_sd": G["deo_sd"], "deo_cut": G["deo_cut"],
            "baseline_dp_gap": B["dp_gap"], "dp_gap": G["dp_gap"], "dp_gap_sd": G["dp_gap_sd"],
            "dp_gap_cut": G["dp_gap_cut"],
            "baseline_acc": B["acc"], "acc": G["acc"], "acc_cost_pts": G["acc_cost_points"],
            "baseline_worst_group_acc": B["worst_group_acc"], "worst_group_acc": G["worst_group_acc"],
            "worst_group_acc_sd": G["worst_group_acc_sd"],
            "per_seed_deo_cut": [1 - pick[method][s][deo] / pick["baseline"][s][deo] for s in common],
            "per_seed_dp_gap_cut": [1 - pick[method][s]["dp_gap"] / pick["baseline"][s]["dp_gap"] for s in common],
            "edits_used": g[0].get("edits_used"), "edits_protected_flipped": g[0].get("edits_protected_flipped")}


def summary(results: dict) -> list[dict]:
    rows = []
    for name, entry in results["runs"].items():
        rep = entry["report"]
        for t, p in PAIRS:
            ran = sorted({r["seed"] for r in rep["runs"] if r["target"] == t})
            for seeds in ({0, 1, 2}, set(ran)) if len(ran) > 3 else (set(ran),):
                row = summarise(rep["runs"], t, p, seeds)
                if row:
                    rows.append({"variant": name, "c": rep["diga_choice"].get(f"{t}/{p}", {}).get("c"), **row})
    return rows


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--check", action="store_true", help="compare with the file's stored summary")
    args = ap.parse_args()
    if not args.results.is_file():
        sys.exit(f"error: no results file {args.results}")
    results = json.loads(args.results.read_text())
    rows = summary(results)
    for r in rows:
        print(f"{r['variant']:<60s} {r['target']:<10s} seeds {','.join(map(str, r['seeds'])):<9s} c {r['c']}  "
              f"DEO {r['baseline_deo']:.3f} -> {r['deo']:.3f} ± {r['deo_sd']:.3f} ({r['deo_cut']:.0%})  "
              f"DP gap {r['baseline_dp_gap']:.3f} -> {r['dp_gap']:.3f} ({r['dp_gap_cut']:.0%})  "
              f"acc {r['baseline_acc']:.3f} -> {r['acc']:.3f}  wga {r['baseline_worst_group_acc']:.3f} -> "
              f"{r['worst_group_acc']:.3f}")
    if args.check:
        stored = results.get("summary", [])
        bad = [i for i, (a, b) in enumerate(zip(rows, stored, strict=False))
               if set(a) != set(b) or not all(same(a[k], b[k]) for k in a)]
        if len(rows) != len(stored) or bad:
            sys.exit(f"error: the stored summary differs from the runs ({len(stored)} stored rows, {len(rows)} "
                     f"recomputed; rows differing: {bad})")
        print(f"the stored summary matches its runs ({len(rows)} rows)")


if __name__ == "__main__":
    main()
