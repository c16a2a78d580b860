"""Figures of the study, drawn only from the Parquet tables and fit outputs."""

from __future__ import annotations

import json
import os

import numpy as np

from .io import atomic_path, read_json

FIGURES = ("data", "training", "epochs", "params", "ensembles", "data_scaling", "distillation", "benchmarks")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"not in this study:\n{what}", ha="center", va="center", transform=ax.transAxes)


def _fit_curve(ax, row, x_lo, x_hi, color, label):
    xs = np.geomspace(x_lo, x_hi, 100)
    ax.plot(xs, row["A"] / xs ** row["alpha"] + row["E"], color=color, lw=1, label=label)
    y = np.asarray(row["y"], float)
    span = max(float(y.max() - y.min()), 1e-3)
    # an asymptote far below the points (an ill-determined fit) would flatten them: say so instead
    if row["E"] >= y.min() - 3 * span:
        ax.axhline(row["E"], color=color, ls=":", lw=1)
        if np.isfinite(row["E_ci_low"]):
            ax.axhspan(row["E_ci_low"], row["E_ci_high"], color=color, alpha=0.08)
    else:
        ax.set_ylim(y.min() - span, y.max() + span)
        ax.annotate(f"E = {row['E']:.3f} is off the axis", (0.02, 0.03), xycoords="axes fraction", color=color)


def _tables(results: str):
    from .results import read_table

    t = {k: read_table(os.path.join(results, f"{k}.parquet"))
         for k in ("runs", "ensembles", "distillation", "benchmarks", "fits", "efficiency")}
    return t


def fig_data(t, ax, data_dir):
    info = []
    for d in sorted(os.listdir(os.path.join(data_dir, "cache"))):
        p = os.path.join(data_dir, "cache", d, "info.json")
        if d[:1] == "d" and d[1:].isdigit() and os.path.exists(p):
            info.append(read_json(p))
    info.sort(key=lambda r: r["token_budget"])
    manifest = read_json(os.path.join(data_dir, "corpus", "manifest.json"))
    ax.bar([str(r["token_budget"]) for r in info], [r["train_documents"] for r in info], color="C0")
    ax.set_xlabel("token budget D (nested prefixes of one stream)")
    ax.set_ylabel("documents in budget")
    ax.set_title(
        f"Corpus: {manifest['source']}, {manifest['documents']['train']} train / "
        f"{manifest['documents']['validation']} held-out documents"
    )


def fig_training(t, ax, data_dir):
    runs = t["runs"]
    for _, r in runs.iterrows():
        c = json.loads(r["eval_curve"])
        if c:
            ax.plot([p["step"] for p in c], [p["loss"] for p in c], lw=0.8, alpha=0.7)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (levanter eval)")
    ax.set_title(f"Training curves of all {len(runs)} runs")


def fig_epochs(t, ax, data_dir):
    from .analysis import usable

    runs = usable(t["runs"])
    if runs["epochs"].nunique() < 2:
        return _empty(ax, "more than one epoch count")
    for (model, wd), g in runs.groupby(["model", "weight_decay"]):
        best = g.groupby("epochs")["loss"].min()
        ax.plot(best.index, best.values, marker="o", label=f"{model}, wd {wd:g}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("epochs")
    ax.set_ylabel("validation loss (best lr)")
    ax.set_title("More epochs at a fixed token budget")
    ax.legend(fontsize=7)


def fig_params(t, ax, data_dir):
    fits = t["fits"]
    fits = fits[fits["fit"] == "params"]
    if fits.empty:
        return _empty(ax, "single-model sweep")
    for i, (_, row) in enumerate(fits.iterrows()):
        color = f"C{i}"
        ax.scatter(row["x"], row["y"], color=color, zorder=3)
        label = f"{row['recipe']} ({row['group']})"
        if row["status"] == "ok":
            _fit_curve(ax, row, min(row["x"]) * 0.7, max(row["x"]) * 4, color,
                       f"{label}: E = {row['E']:.3f}, alpha = {row['alpha']:.2f}")
        else:
            ax.plot(row["x"], row["y"], color=color, label=f"{label}: {row['status']}")
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("validation loss")
    ax.set_title("Loss vs N: L = A / N^alpha + E (dotted: asymptote E, band: CI)")
    ax.legend(fontsize=7)


def fig_ensembles(t, ax, data_dir):
    ens, fits = t["ensembles"], t["fits"]
    if ens.empty:
        return _empty(ax, "ensembles")
    for i, (name, g) in enumerate(ens.groupby("ensemble")):
        color = f"C{i}"
        ax.errorbar(g["ensemble_size"], g["loss_mean"], yerr=g["loss_std"], fmt="o", color=color, capsize=2)
        row = fits[(fits["fit"] == "ensemble") & (fits["group"] == name)]
        if not row.empty and row.iloc[0]["status"] == "ok":
            r = row.iloc[0]
            _fit_curve(ax, r, 1, g["ensemble_size"].max() * 4, color, f"{name}: E = {r['E']:.3f} (K -> inf)")
        else:
            ax.plot(g["ensemble_size"], g["loss"], color=color, label=f"{name}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ensemble members K")
    ax.set_ylabel("ensemble validation loss")
    ax.set_title("Ensembles: L = A / K^alpha + E (bars: spread over member subsets)")
    ax.legend(fontsize=7)


def fig_data_scaling(t, ax, data_dir):
    fits, eff = t["fits"], t["efficiency"]
    row = fits[fits["fit"] == "data"]
    if row.empty or not len(row.iloc[0]["x"]):
        return _empty(ax, "baseline runs")
    r = row.iloc[0]
    ax.scatter(r["x"], r["y"], color="C0", zorder=3, label="baseline (wd default), best per D")
    if r["status"] == "ok":
        _fit_curve(ax, r, min(r["x"]) * 0.7, max(r["x"]) * 8, "C0",
                   f"L(D): E = {r['E']:.3f}, alpha = {r['alpha']:.2f}")
        for i, (_, e) in enumerate(eff[eff["recipe"] != "baseline"].iterrows()):
            ax.scatter([e["effective_tokens"]], [e["loss"]], marker="*", s=60, color=f"C{i + 1}",
                       label=f"{e['recipe']} at D={e['token_budget']}: x{e['data_efficiency']:.2f} data")
    else:
        ax.set_title(f"Baseline data scaling: {r['status']}")
    ax.set_xscale("log")
    ax.set_xlabel("tokens D (stars: effective tokens of a recipe)")
    ax.set_ylabel("validation loss")
    ax.legend(fontsize=7)


def fig_distillation(t, ax, data_dir):
    dist = t["distillation"]
    if dist.empty:
        return _empty(ax, "distillation")
    labels, values, colors = [], [], []
    for _, d in dist.iterrows():
        for lab, v, c in (("single", d["single_model_loss"], "C0"), (f"teacher ({d['teacher_kind']})", d["teacher_loss"], "C1"),
                          ("student", d["student_loss"], "C2")):
            labels.append(f"{d['distillation']}\n{lab}")
            values.append(v)
            colors.append(c)
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=6, rotation=30)
    lo = min(values)
    ax.set_ylim(lo - 0.1 * (max(values) - lo + 1e-3) - 0.05, max(values) + 0.05)
    ax.set_ylabel("validation loss")
    kept = ", ".join(f"{d['distillation']}: {d['fraction_of_gain_kept']:.0%} of gain kept"
                     for _, d in dist.iterrows() if np.isfinite(d["fraction_of_gain_kept"]))
    ax.set_title(f"Distillation {kept}")


def fig_benchmarks(t, ax, data_dir):
    b = t["benchmarks"]
    for i, (fam, g) in enumerate(b.groupby("family")):
        ax.errorbar(g["loss"], g["acc"], yerr=g["acc_stderr"], fmt="o", color=f"C{i}", label=fam, capsize=2)
    if not b.empty:
        ax.axhline(b["chance"].iloc[0], color="grey", ls="--", lw=1, label="chance")
    ax.set_xlabel("validation loss")
    ax.set_ylabel("accuracy (next-line multiple choice)")
    ax.set_title("Benchmark accuracy vs loss")
    ax.legend(fontsize=7)


def draw(name: str, results: str, out: str, data_dir: str) -> None:
    if name not in FIGURES:
        raise ValueError(f"unknown figure '{name}'; known: {FIGURES}")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    globals()[f"fig_{name}"](_tables(results), ax, data_dir)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
