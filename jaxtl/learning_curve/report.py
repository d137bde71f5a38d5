"""The grid's report: results.json, results.md (table and verdict) and learning_curve.png.

Per (fraction, strategy): mean, std (over seeds, ddof 1), min and max of the test errors,
the epochs to convergence (epoch of the kept weights), the training time (the epochs' times
summed over every run of a cell, resumes included) and the trainable
parameters. The verdict: for each strategy other than scratch, the smallest fraction
whose mean test error is within the seeds' spread of scratch at the largest fraction
(mean <= scratch mean + scratch std), for forces and for energy, from rows with every
seed finished; no verdict until scratch at the largest fraction has every seed.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxtl.config_io import write_atomic, write_text_atomic
from jaxtl.learning_curve.config import SCRATCH, LearningCurveConfig
from jaxtl.provenance import provenance

METRICS = (
    "forces_rmse",
    "energy_rmse",
    "forces_mae",
    "energy_mae",
    "stress_rmse",
    "epochs_to_convergence",
    "epochs_run",
    "wall_s",
    "train_s",
    "n_trainable",
)


def spread(values: Sequence[float]) -> dict:
    """{"mean", "std" (ddof 1; 0 for one value), "min", "max", "n"} of the non-None values."""
    xs = np.array([v for v in values if v is not None], dtype=float)
    if xs.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    std = float(xs.std(ddof=1)) if xs.size > 1 else 0.0
    return {"mean": float(xs.mean()), "std": std, "min": float(xs.min()), "max": float(xs.max()), "n": int(xs.size)}


def summarise(records: Sequence[dict], config: LearningCurveConfig) -> list[dict]:
    """One row per (fraction, strategy) with finished cells, in the grid's order."""
    rows = []
    for fraction in sorted(config.grid.fractions):
        for strategy in config.grid.strategies:
            cells = [r for r in records if r["fraction"] == fraction and r["strategy"] == strategy]
            if not cells:
                continue
            row = {
                "fraction": fraction,
                "strategy": strategy,
                "seeds": sorted(r["seed"] for r in cells),
                "n_train": spread([r["n_train"] for r in cells])["mean"],
                "n_test": cells[0]["n_test"],
                "hit_max_epochs": sum(bool(r["hit_max_epochs"]) for r in cells),
                "devices": sorted({r["device"] for r in cells}),
            }
            row.update({key: spread([r.get(key) for r in cells]) for key in METRICS})
            rows.append(row)
    return rows


def verdict(rows: Sequence[dict], metric: str, config: LearningCurveConfig) -> dict:
    """strategy -> {"fraction": smallest matching fraction or None, the reference's spread,
    "fractions_complete": the fractions with every seed finished, "capped": the seeds of the
    reference and of the matching row that stopped at the epoch cap}; or {"pending": why}
    while scratch at the grid's largest fraction lacks seeds. Only complete rows (every
    seed of the grid finished) count, so a partial grid states no verdict it may not keep.
    A capped seed was still improving when it stopped: a capped reference flatters every
    strategy, and the report says so."""
    n_seeds, largest = config.grid.seeds, max(config.grid.fractions)
    complete = [r for r in rows if len(r["seeds"]) == n_seeds and r[metric]["mean"] is not None]
    ref = next((r for r in complete if r["strategy"] == SCRATCH and r["fraction"] == largest), None)
    if ref is None:
        done = max((len(r["seeds"]) for r in rows if r["strategy"] == SCRATCH and r["fraction"] == largest), default=0)
        return {"pending": f"scratch at {largest:.0%} has {done} of {n_seeds} seeds finished"}
    bound = ref[metric]["mean"] + ref[metric]["std"]
    out = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows if r["strategy"] != SCRATCH):
        mine = [r for r in complete if r["strategy"] == strategy]
        ok = [r for r in mine if r[metric]["mean"] <= bound]
        match = min(ok, key=lambda r: r["fraction"]) if ok else None
        out[strategy] = {
            "fraction": None if match is None else match["fraction"],
            "reference_fraction": ref["fraction"],
            "reference_mean": ref[metric]["mean"],
            "reference_std": ref[metric]["std"],
            "fractions_complete": sorted(r["fraction"] for r in mine),
            "capped": {"reference": ref["hit_max_epochs"], "match": None if match is None else match["hit_max_epochs"]},
        }
    return out


def write_report(
    out: Path, config: LearningCurveConfig, records: Sequence[dict], command: str, commit: str, with_plot: bool = True
) -> dict:
    """Write OUT/results.json, OUT/results.md and (`with_plot`) OUT/learning_curve.png; return the JSON."""
    rows = summarise(records, config)
    summary = {
        "provenance": provenance(command, commit),
        "config": config.to_dict(),
        "n_cells": {
            "finished": len(records),
            "grid": len(config.grid.fractions) * len(config.grid.strategies) * config.grid.seeds,
        },
        "verdict": {m: verdict(rows, m, config) for m in ("forces_rmse", "energy_rmse")},
        "rows": rows,
        "cells": list(records),
    }
    # atomic: several processes of one grid rewrite these after their cells
    write_text_atomic(out / "results.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomic(out / "results.md", markdown(summary))
    if with_plot:
        plot(rows, out / "learning_curve.png")
    return summary


def _fmt(s: dict, digits: int) -> str:
    if s["mean"] is None:
        return "-"
    if s["n"] == 1:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def verdict_lines(summary: dict) -> list[str]:
    lines = []
    for metric, unit in (("forces_rmse", "meV/A"), ("energy_rmse", "meV/atom")):
        name = metric.split("_")[0]
        result = summary["verdict"][metric]
        if "pending" in result:
            lines.append(f"- {name} RMSE: no verdict yet ({result['pending']})")
            continue
        for strategy, v in result.items():
            ref = (
                f"scratch at {v['reference_fraction']:.0%}: {v['reference_mean']:.2f} ± {v['reference_std']:.2f} {unit}"
            )
            complete = ", ".join(f"{f:.0%}" for f in v["fractions_complete"]) or "none"
            found = (
                f"from {v['fraction']:.0%} of the pool"
                if v["fraction"] is not None
                else "at none of the complete fractions"
            )
            capped = v.get("capped") or {}
            caveats = [
                f"{n} of the {what}'s seeds stopped at the epoch cap, still improving"
                for what, n in (("reference", capped.get("reference")), ("match", capped.get("match")))
                if n
            ]
            lines.append(
                f"- {strategy}: {name} RMSE within the seeds' spread of {ref} {found} "
                f"(fractions with every seed finished: {complete})"
                + ("" if not caveats else f"; **not converged**: {'; '.join(caveats)}")
            )
    return lines


def _short(commit: str) -> str:
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def cell_provenance(cells: Sequence[dict]) -> str:
    """One line on where the cells came from: the jaxtl commits they were trained at (with
    counts), their dates, and how many were imported from another run's report."""
    commits = collections.Counter(_short(str(r.get("jaxtl_commit"))) for r in cells)
    dates = sorted(str(r["date"])[:10] for r in cells if r.get("date"))
    imported = collections.Counter(r["imported_from"]["file"] for r in cells if r.get("imported_from"))
    line = "Cells trained at jaxtl " + ", ".join(f"{c} ({n})" for c, n in sorted(commits.items()))
    line += f", {dates[0]} to {dates[-1]}" if dates else ""
    if imported:
        line += "; imported from other runs' reports: " + ", ".join(f"{n} from {f}" for f, n in imported.items())
    return line + "."


def markdown(summary: dict) -> str:
    """The table (mean ± std [min, max] over seeds) and the verdict."""
    p, rows = summary["provenance"], summary["rows"]
    devices = sorted({d for r in rows for d in r["devices"]})
    n_test = sorted({r["n_test"] for r in rows})
    data = summary["config"]["data"]
    title = f"# Learning curve: {Path(data['train_file']).name} -> {Path(data['test_file']).name}"
    counts = (
        f"Cells finished: {summary['n_cells']['finished']} of {summary['n_cells']['grid']}. "
        f"Test set: {', '.join(map(str, n_test)) or '-'} structures. "
        "Errors on the test set, mean ± std [min, max] over seeds."
    )
    c = summary["config"]["convergence"]
    rule = (
        f"Convergence rule (every cell, scratch included): stop when the validation loss has not fallen "
        f"by more than {c.get('min_rel_improvement', 0.0):.1%} below its last counted value for "
        f"{c['patience']} epochs; the lowest-validation-loss weights are tested; cap {c['max_epochs']} epochs."
    )
    lines = [title, "", counts, "", rule, ""]
    if len(devices) > 1:
        lines += [f"**Cells ran on different devices** ({'; '.join(devices)}): see the device column.", ""]
    stress = any(r["stress_rmse"]["mean"] is not None for r in rows)
    head = (
        "| fraction | n_train | strategy | seeds | trainable | E RMSE (meV/atom) | F RMSE (meV/A) | "
        + ("S RMSE (meV/A^3) | " if stress else "")
        + "epochs to convergence | hit max epochs | training time (s) |"
    )
    lines += [head + (" device |" if len(devices) > 1 else ""), "|" + "---|" * (10 + stress + (len(devices) > 1))]
    for r in rows:
        line = (
            f"| {r['fraction']:.0%} | {r['n_train']:.0f} | {r['strategy']} | {len(r['seeds'])} | "
            f"{r['n_trainable']['mean']:.0f} | {_fmt(r['energy_rmse'], 2)} | {_fmt(r['forces_rmse'], 1)} | "
            + (f"{_fmt(r['stress_rmse'], 2)} | " if stress else "")
            + f"{_fmt(r['epochs_to_convergence'], 0)} | {r['hit_max_epochs']} of {len(r['seeds'])} | "
            f"{_fmt(r['train_s'], 0)} |"
        )
        lines.append(line + (f" {', '.join(r['devices'])} |" if len(devices) > 1 else ""))
    rule = (
        "Smallest fraction at which each strategy's mean test error is within the seeds' spread of "
        "scratch at the largest fraction (mean <= scratch mean + scratch std):"
    )
    lines += [
        "",
        "Training time: the sum of the times of the epochs a cell's log keeps, over every run of it (an "
        "interrupted cell resumes in another process; epochs redone after a resume count once; start-up, "
        "compilation and testing not counted). results.json's wall_s is the wall time of the run that "
        "finished the cell (with the earlier finished runs' when the epoch cap was raised).",
    ]
    lines += ["", "## Verdict", "", rule, ""]
    lines += verdict_lines(summary) or ["- no strategy besides scratch in the grid"]
    lines += ["", cell_provenance(summary["cells"])] if summary["cells"] else []
    lines += [
        "",
        f"Report: jaxtl {p['jaxtl_commit']}; {p['date']}; device {', '.join(p['device'])}; "
        + ", ".join(f"{k} {v}" for k, v in p["versions"].items()),
        "",
        f"Command: `{p['command']}`",
        "",
    ]
    return "\n".join(lines)


def plot(rows: Sequence[dict], path: Path) -> None:
    """Log-log test errors against training structures per strategy, bars from min to max
    over seeds. Does nothing when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        rs = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["n_train"])
        for ax, key in zip(axes, ("energy_rmse", "forces_rmse")):
            rs_k = [r for r in rs if r[key]["mean"] is not None]
            if not rs_k:
                continue
            mean = np.array([r[key]["mean"] for r in rs_k])
            low = mean - np.array([r[key]["min"] for r in rs_k])
            high = np.array([r[key]["max"] for r in rs_k]) - mean
            ax.errorbar([r["n_train"] for r in rs_k], mean, yerr=[low, high], fmt="o-", capsize=3, label=strategy)
    axes[0].set_ylabel("test energy RMSE (meV/atom)")
    axes[1].set_ylabel("test force RMSE (meV/A)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training structures")
        ax.legend()
    fig.suptitle("mean over seeds, bars: min to max")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
