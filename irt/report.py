"""Render a validation run as a markdown table, a CSV and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path

from irt.validate import summarize

__all__ = ["write_report", "best_estimator"]


REFERENCE_K = 50  # the anchor count the report's headline and pivots compare at


def reference_k(summary) -> int:  # noqa: ANN001
    """The k the report compares at: 50 when it was run, else the run's k closest to 50
    (``merge3 irt validate --ks 25`` headlines k = 25, not a k it never ran)."""
    ks = sorted(int(k) for k in summary["k"].unique())
    return min(ks, key=lambda k: (abs(k - REFERENCE_K), k)) if ks else REFERENCE_K


def best_estimator(summary, k: int | None = None, split: str = "random",  # noqa: ANN001
                   ) -> tuple[str, str, float]:
    """(estimator, selector, MAE pp) with the lowest mean MAE at k anchors on ``split``
    (default k: :func:`reference_k`)."""
    k = reference_k(summary) if k is None else k
    rows = summary[(summary["split"] == split) & (summary["k"] == k)]
    if rows.empty:
        rows = summary[summary["split"] == split]
    best = rows.sort_values("mae_pp").iloc[0]
    return str(best["estimator"]), str(best["selector"]), float(best["mae_pp"])


def _markdown(frame, columns: list[str]) -> str:  # noqa: ANN001
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    lines = []
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            v = row[c]
            cells.append(f"{v:.2f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def _pivot(summary, split: str, k: int, metric: str) -> str:  # noqa: ANN001
    sub = summary[(summary["split"] == split) & (summary["k"] == k)]
    if sub.empty:
        return "(no rows)\n"
    table = sub.pivot(index="estimator", columns="selector", values=metric)
    columns = ["estimator", *table.columns]
    frame = table.reset_index()
    return _markdown(frame, columns)


def _by_k(summary, splits: list[str]) -> str:  # noqa: ANN001
    ks = sorted(summary["k"].unique())
    head = "| split | estimator | selector | " + " | ".join(f"k={k}" for k in ks) + " |\n"
    head += "|" + "---|" * (3 + len(ks)) + "\n"
    lines = []
    k_ref = reference_k(summary)
    for split in splits:
        sub = summary[summary["split"] == split]
        for estimator in dict.fromkeys(sub["estimator"]):
            rows = sub[sub["estimator"] == estimator]
            at_ref = rows[rows["k"] == k_ref]
            selector = (at_ref.sort_values("mae_pp").iloc[0]["selector"] if not at_ref.empty
                        else rows.iloc[0]["selector"])
            line = rows[rows["selector"] == selector].set_index("k")["mae_pp"]
            cells = [f"{line[k]:.2f}" if k in line.index else "" for k in ks]
            lines.append(f"| {split} | {estimator} | {selector} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def _recalibration(summary) -> str:  # noqa: ANN001
    at_ref = summary[summary["k"] == reference_k(summary)]
    before = at_ref[at_ref["split"] == "strongest-half (no recal.)"].set_index(
        ["estimator", "selector"])
    after = at_ref[at_ref["split"] == "strongest-half (recalibrated)"].set_index(
        ["estimator", "selector"])
    lines = ["| estimator | selector | MAE no recal. | MAE recal. | Kendall no recal. | "
             "Kendall recal. |", "|---|---|---|---|---|---|"]
    for key in before.index:
        if key in after.index:
            b, a = before.loc[key], after.loc[key]
            lines.append(f"| {key[0]} | {key[1]} | {b['mae_pp']:.2f} | {a['mae_pp']:.2f} | "
                         f"{b['kendall']:.2f} | {a['kendall']:.2f} |")
    return "\n".join(lines) + "\n"


def _flagged(info: dict) -> str:
    """Per calibration: how many items were flagged (left out of anchor selection) and the
    first ids; the full lists are in info.json."""
    lines = []
    for c in info.get("calibrations", []):
        flags = c.get("flagged")
        if flags is None:
            continue
        ids = list(flags["items"])
        shown = ", ".join(ids[:8]) + (f" … (+{len(ids) - 8})" if len(ids) > 8 else "")
        lines.append(f"| {c['split']} | {c['seed']} | {c['n_train']} | {flags['count']} | "
                     f"{flags['negative']} | {flags['near-zero']} | {shown} |")
    if not lines:
        return ""
    return ("\nFlagged items (non-positive or near-zero discrimination, never selected; "
            "irt/flags.py):\n\n| split | seed | models | flagged | negative | near-zero | "
            "items |\n|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")


def write_report(rows: list[dict], info: dict, out_dir: str | Path, title: str,
                 command: str = "", machine: str = "") -> Path:
    """Write results.csv, summary.csv, report.md and mae_vs_k.png into ``out_dir``."""
    # a Figure without pyplot: no backend switch in the caller's process (a notebook keeps
    # its inline plots)
    import pandas as pd
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    summary = summarize(rows)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "info.json").write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")
    splits = list(dict.fromkeys(summary["split"]))
    best = best_estimator(summary)
    k_ref = reference_k(summary)
    parts = [f"# {title}\n", f"Command: `{command}`\n" if command else "",
             f"Machine: {machine}\n" if machine else "",
             f"Population: {info['n_models']} models × {info['n_items']} items. "
             f"Best at k = {k_ref} on random held-out models: **{best[0]} with {best[1]} anchors, "
             f"{best[2]:.2f} pp MAE**.\n",
             "Calibrations: " + json.dumps([{k: v for k, v in c.items() if k != "flagged"}
                                            for c in info.get("calibrations", [])]) + "\n",
             _flagged(info)]
    if "recalibration_seconds" in info:
        parts.append(f"Recalibration: {info['recalibration_added']} strongest models added, "
                     f"{info['recalibration_seconds']} s.\n")
    parts.append(f"\n## MAE (pp) by number of anchors k (selector: the best at k = {k_ref} "
                 "per estimator and split)\n")
    parts.append(_by_k(summary, splits))
    if {"strongest-half (no recal.)", "strongest-half (recalibrated)"} <= set(splits):
        parts.append(f"\n## Recalibration: the other half of the strongest models, "
                     f"k = {k_ref}\n")
        parts.append(_recalibration(summary))
    for split in splits:
        parts.append(f"\n## {split}: MAE (pp) at k = {k_ref}, estimator × selector\n")
        parts.append(_pivot(summary, split, k_ref, "mae_pp"))
        parts.append(f"\n## {split}: Kendall τ at k = {k_ref}\n")
        parts.append(_pivot(summary, split, k_ref, "kendall"))
    parts.append("\n## All rows (mean over seeds)\n")
    parts.append(_markdown(summary, ["split", "k", "selector", "estimator", "mae_pp", "mae_sd",
                                     "spearman", "kendall", "stderr_pp", "coverage95",
                                     "seeds", "n_test"]))
    report = out / "report.md"
    report.write_text("\n".join(p for p in parts if p), encoding="utf-8")

    n_cols = 2 if len(splits) > 1 else 1
    n_rows = -(-len(splits) // n_cols)
    fig = Figure(figsize=(6 * n_cols, 4 * n_rows))
    axes = fig.subplots(n_rows, n_cols, sharey=True, squeeze=False)
    for ax in axes.flat[len(splits):]:
        ax.set_visible(False)
    for ax, split in zip(axes.flat, splits):
        sub = summary[summary["split"] == split]
        for estimator, group in sub.groupby("estimator", sort=False):
            # each estimator with its best selector at the reference k on this split
            at_ref = group[group["k"] == k_ref]
            selector = (at_ref.sort_values("mae_pp").iloc[0]["selector"] if not at_ref.empty
                        else group.iloc[0]["selector"])
            line = group[group["selector"] == selector].sort_values("k")
            ax.plot(line["k"], line["mae_pp"], marker="o", label=f"{estimator} ({selector})")
        ax.axhline(2.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks(sorted(sub["k"].unique()))
        ax.set_xticklabels([str(k) for k in sorted(sub["k"].unique())])
        ax.set_title(split, fontsize=10)
        ax.set_xlabel("anchors k")
        ax.set_ylabel("MAE (pp)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "mae_vs_k.png", dpi=110)
    return report
