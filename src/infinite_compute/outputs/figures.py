"""Figures of the study, drawn only from the Parquet tables and fit outputs."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from typing import Callable

import numpy as np
import pandas as pd

from ..runtime.io import atomic_path
from ..science.analysis import ASYMPTOTE_LABELS, LIMITS


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure of the study: `draw(tables, ax, fig)` draws it on one axes; `caption` is its
    report caption, a format string whose fields are settings of the config (`caption_settings`)."""

    name: str
    draw: Callable
    caption: str


REGISTRY: dict[str, Figure] = {}


def figure(name: str, caption: str):
    """Register the decorated function as the figure `name`: a new figure is this one entry."""

    def register(fn):
        if name in REGISTRY:
            raise ValueError(f"figure '{name}' is registered twice")
        REGISTRY[name] = Figure(name, fn, caption)
        return fn

    return register


def _times(factor: float, what: str) -> str:
    return {2: f"twice {what}", 0.5: f"half {what}", 1: what}.get(factor, f"{factor:g} x {what}")


def caption_settings(config: dict) -> dict[str, str]:
    """The config's settings that captions state, as sentences: `member_rule`, each ensemble
    recipe's member rule (epochs_factor x the selected run's epochs, weight_decay_factor x its wd)."""
    rules: list[str] = []
    for r in config.get("ensemble_recipes", []):
        paper = r["epochs_factor"] == 2 and r["weight_decay_factor"] == 0.5
        rule = (f"Members of the ensemble recipe {r['name']} (search {r['search']}) take the tuned single model's lr, "
                f"{_times(r['epochs_factor'], 'its epochs')}, {_times(r['weight_decay_factor'], 'its weight decay')}, "
                "new seeds" + (" (the paper's rule)." if paper else
                               " (the paper's rule is twice the epochs and half the weight decay)."))
        if rule not in rules:
            rules.append(rule)
    member_rule = (" ".join(rules) if rules else
                   "The study has no ensemble recipe; each fixed ensemble's members are given in the config.")
    return {"member_rule": member_rule}


def caption(name: str, config: dict) -> str:
    """The report caption of figure `name` under `config`."""
    return REGISTRY[name].caption.format(**caption_settings(config))


def _plt():
    # matplotlib is imported only to draw: the Snakefile imports the registry (FIGURES, captions)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"not in this study:\n{what}", ha="center", va="center", transform=ax.transAxes)


def _finite(v) -> bool:
    try:
        return v is not None and bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False


def _end(v, fmt: str = ".3f") -> str:
    """A CI end as a legend says it: a nan end is one the data do not bound."""
    return format(float(v), fmt) if _finite(v) else "not determined"


def _ci(low, high, fmt: str = ".3f") -> str:
    """A CI in words: "CI [low, high]", an end the data do not bound "not determined"."""
    if not _finite(low) and not _finite(high):
        return "CI not determined"
    return f"CI [{_end(low, fmt)}, {_end(high, fmt)}]"


def _law(row) -> str:
    """A fitted law's asymptote and exponent with their CIs, for a legend."""
    return f"E = {row['E']:.3f}, {_ci(row['E_ci_low'], row['E_ci_high'])}; alpha = {row['alpha']:.2f}"


def _errors(row, n: int):
    """A fit's points' standard errors (`y_se`), or None when the noise was not measured."""
    se = row.get("y_se") if hasattr(row, "get") else None
    if se is None or np.ndim(se) == 0:
        return None
    se = np.asarray(se, float)
    return se if se.size == n and np.isfinite(se).any() else None


class _Span:
    """The y range a figure shows: its points with their error bars and its fitted curves over the
    points' own x range, plus a margin. An asymptote and its CI band are drawn only where they lie near
    that range: one far below it (an ill-determined E, or an E at 0) would stretch the axis and flatten
    every curve, so its value is said in its legend label instead."""

    MARGIN = 0.08  # of the range, each side
    NEAR = 0.35  # an asymptote this share of the range beyond the data is still drawn, the range stretched to it

    def __init__(self):
        self.values: list[float] = []
        self.asymptotes: list[tuple] = []

    def add(self, *values) -> None:
        for v in values:
            v = np.ravel(np.asarray(v, float))
            self.values.extend(v[np.isfinite(v)].tolist())

    def asymptote(self, E, low, high, color, line=None, label: str | None = None) -> None:
        """An asymptote E with its CI to draw as a dotted line (and a band where both ends are
        determined) if it lies near the data; `line` is the legend entry that says where it is
        otherwise (or `label`, a legend entry of its own when it is drawn)."""
        self.asymptotes.append((float(E), low, high, color, line, label))

    def finish(self, ax) -> None:
        if not self.values:
            return
        lo, hi = min(self.values), max(self.values)
        rng = max(hi - lo, 1e-3 * max(abs(hi), 1.0))
        near_lo, near_hi = lo - self.NEAR * rng, hi + self.NEAR * rng
        shown = []
        for E, low, high, color, line, label in self.asymptotes:
            if near_lo <= E <= near_hi:
                shown.append((E, low, high, color, label))
                lo, hi = min(lo, E), max(hi, E)
            elif line is not None:
                line.set_label(f"{line.get_label()} ({'below' if E < lo else 'above'} the axis)")
        rng = max(hi - lo, 1e-3 * max(abs(hi), 1.0))
        ax.set_ylim(lo - self.MARGIN * rng, hi + self.MARGIN * rng)
        for E, low, high, color, label in shown:
            ax.axhline(E, color=color, ls=":", lw=1, label=label)
            if _finite(low) and _finite(high):  # a CI open at an end is said in the legend, never drawn
                ax.axhspan(low, high, color=color, alpha=0.08)


def _points(ax, span: _Span, x, y, se, color, *, hollow=None, marker="o", label=None, ms=5, zorder=3):
    """Points with their standard errors as error bars (where measured); `hollow` marks some open."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    hollow = np.zeros(len(x), bool) if hollow is None else np.asarray(hollow, bool)
    if se is not None:
        ax.errorbar(x, y, yerr=se, fmt="none", ecolor=color, elinewidth=1, capsize=2, zorder=zorder)
        span.add(y - np.nan_to_num(se), y + np.nan_to_num(se))
    span.add(y)
    if (~hollow).any():
        ax.plot(x[~hollow], y[~hollow], marker, color=color, ms=ms, ls="none", zorder=zorder, label=label)
    if hollow.any():
        ax.plot(x[hollow], y[hollow], marker, mfc="white", mec=color, ms=ms, ls="none", zorder=zorder,
                label=None if (~hollow).any() else label)


def _ci_points(ax, span: _Span, x, E, low, high, color, *, marker="s", label=None, ls="none"):
    """Fitted asymptotes E at x with their CIs as error bars; an end the data do not bound is an arrow
    pointing that way (the value could be anywhere there), never a bar to 0 or to the axis."""
    x, E = np.asarray(x, float), np.asarray(E, float)
    low, high = np.asarray(low, float), np.asarray(high, float)
    down = np.where(np.isfinite(low), E - low, np.nan)
    up = np.where(np.isfinite(high), high - E, np.nan)
    ax.errorbar(x, E, yerr=[np.abs(down), np.abs(up)], fmt=marker, ls=ls, color=color, capsize=2, ms=4,
                label=label)
    span.add(E, low, high)
    for xi, yi, lo_ok, hi_ok in zip(x, E, np.isfinite(low), np.isfinite(high)):
        for ok, dy in ((lo_ok, -16), (hi_ok, 16)):
            if not ok:
                ax.annotate("", (xi, yi), xytext=(0, dy), textcoords="offset points",
                            arrowprops=dict(arrowstyle="<-", color=color, lw=1, shrinkA=0, shrinkB=3))
    return bool((~np.isfinite(low) | ~np.isfinite(high)).any())


def _open_ci_key(ax) -> None:
    """The legend entry of _ci_points' arrows."""
    ax.plot([], [], marker=r"$\downarrow$", ls="none", color="grey", ms=7,
            label="arrow: CI not determined that way (any value)")


def _legend(ax, fig, fontsize: int = 6) -> None:
    """The axes' legend: inside when short, else below the axes (the figure grows to hold it), where
    it hides no point or curve."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if len(handles) <= 4 and max(map(len, labels)) <= 50:
        ax.legend(fontsize=fontsize)
        return
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + len(handles) * fontsize * 1.45 / 72 + 0.15)
    fig.set_layout_engine("constrained")
    fig.legend(handles, labels, fontsize=fontsize, loc="outside lower center", frameon=False)


def _fit_curve(ax, span: _Span, row, x_lo, x_hi, color, label):
    """A fitted law L = A / x^alpha + E from x_lo to x_hi; the axis spans it over its points' x only,
    and its asymptote E is drawn (dotted, with its CI's band if determined) only near the data."""
    xs = np.geomspace(x_lo, x_hi, 200)
    (line,) = ax.plot(xs, row["A"] / xs ** row["alpha"] + row["E"], color=color, lw=1, label=label)
    x = np.asarray(row["x"], float)
    inside = np.geomspace(x.min(), x.max(), 50)
    span.add(row["A"] / inside ** row["alpha"] + row["E"])
    span.asymptote(row["E"], row["E_ci_low"], row["E_ci_high"], color, line)
    return line


def _search_runs(t, recipe: str):
    """Runs trained by the search cells of one recipe, with their cell's model."""
    runs, tuning = t["runs"], t["tuning"]
    cells = set(tuning.loc[tuning["recipe"] == recipe, "cell"])
    ok = runs[runs["searches"].map(lambda c: bool(cells & set(c))) & ~runs["diverged"]]
    return ok


@figure(
    "data",
    'Documents in each nested token budget D (each budget is a prefix of the same token '
    'stream); the corpus and its files are recorded with sha256 in '
    'results/data/corpus/manifest.json.',
)
def fig_data(t, ax, fig):
    info = sorted(t["budget_caches"], key=lambda r: r["token_budget"])
    manifest = t["manifest"]
    ax.bar([str(r["token_budget"]) for r in info], [r["train_documents"] for r in info], color="C0")
    ax.set_xlabel("token budget D (nested prefixes of one stream)")
    ax.set_ylabel("documents in budget")
    ax.set_title(
        f"Corpus: {manifest['source']}, {manifest['documents']['train']} train / "
        f"{manifest['documents']['validation']} held-out documents"
    )


@figure(
    "training",
    "Validation loss during training (levanter's in-training evaluation) of every run of the "
    'plan.',
)
def fig_training(t, ax, fig):
    runs = t["runs"]
    for _, r in runs.iterrows():
        c = json.loads(r["eval_curve"])
        if c:
            ax.plot([p["step"] for p in c], [p["loss"] for p in c], lw=0.8, alpha=0.7)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (levanter eval)")
    ax.set_title(f"Training curves of all {len(runs)} runs")


@figure(
    "epochs",
    'Validation loss against epochs at a fixed token budget, per model, for the runs of the '
    'baseline searches (default weight decay, solid) and the regularized searches (dashed), '
    "each point the best over the other searched hyperparameters. The paper's first claim: at "
    'the default weight decay more epochs overfit.',
)
def fig_epochs(t, ax, fig):
    """Claim 1: at the default weight decay more epochs overfit; tuned weight decay moves the optimum."""
    drawn = 0
    tuning = t["tuning"]
    if tuning.empty:
        return _empty(ax, "searches over epochs")
    budget = tuning["token_budget"].value_counts().idxmax()  # the budget most cells share
    for recipe, ls in (("baseline", "-"), ("regularized", "--")):
        runs = _search_runs(t, recipe)
        runs = runs[runs["token_budget"] == budget]
        for i, (model, g) in enumerate(sorted(runs.groupby("model"), key=lambda kv: kv[1]["non_embedding_params"].iloc[0])):
            best = g.groupby("epochs")["loss"].min()
            if len(best) < 2:
                continue
            ax.plot(best.index, best.values, ls=ls, marker="o", color=f"C{i}", ms=3,
                    label=f"{model} ({g['non_embedding_params'].iloc[0] / 1e6:.2f}M), {recipe}")
            drawn += 1
    if not drawn:
        return _empty(ax, "searches over epochs")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("epochs over the fixed token budget")
    ax.set_ylabel("validation loss (best over the other searched axes)")
    ax.set_title(f"Loss vs epochs at D={budget}: baseline (solid, default wd), regularized (dashed)", fontsize=9)
    ax.legend(fontsize=6)


@figure(
    "weight_decay",
    'The regularized search of each model: validation loss over weight decay and epochs (best '
    'learning rate at each), blank where the search did not train. The red box is the '
    'selected run; the title gives its weight decay as a multiple of the default and its '
    'locally-optimal certificate (certified: all its neighbours trained and none lower; edge: '
    'the optimum sits on an end of the searched grid, on the named side).',
)
def fig_weight_decay(t, ax, fig):
    """Per N, the regularized search's loss over weight decay x epochs (best lr), the selected run
    boxed, its certificate in the title."""
    tuning = t["tuning"]
    reg = tuning[tuning["recipe"] == "regularized"].sort_values(["token_budget", "non_embedding_params"])
    if reg.empty:
        return _empty(ax, "a regularized search")
    from matplotlib.patches import Rectangle  # once _plt() has chosen the backend

    runs = t["runs"]
    fig.clear()
    fig.set_layout_engine("constrained")
    n = len(reg)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig.set_size_inches(3.0 * cols, 2.8 * rows + 0.4)
    vmin, vmax = None, None
    grids = []
    for _, cell in reg.iterrows():
        g = runs[runs["searches"].map(lambda c, name=cell["cell"]: name in c) & np.isfinite(runs["loss"])]
        table = g.pivot_table(index="epochs", columns="weight_decay", values="loss", aggfunc="min")
        grids.append((cell, table))
        lo, hi = np.nanmin(table.values), np.nanmax(table.values)
        vmin = lo if vmin is None else min(vmin, lo)
        vmax = hi if vmax is None else max(vmax, hi)
    for k, (cell, table) in enumerate(grids):
        a = fig.add_subplot(rows, cols, k + 1)
        im = a.imshow(table.values, origin="lower", cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto")
        a.set_xticks(range(table.shape[1]), [f"{w:g}" for w in table.columns], fontsize=6, rotation=45)
        a.set_yticks(range(table.shape[0]), [str(e) for e in table.index], fontsize=6)
        for (i, j), v in np.ndenumerate(table.values):
            if np.isfinite(v):
                a.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5, color="w")
        i = list(table.index).index(cell["epochs"])
        j = list(table.columns).index(cell["weight_decay"])
        a.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="r", lw=2))
        if cell["certified"]:
            verdict = "certified"
        elif len(cell["edges"]):
            verdict = f"{cell['status']}: at the grid's edge in " + ", ".join(cell["edges"])
        else:
            verdict = f"{cell['status']}: not certified"
        a.set_title(f"{cell['model']} D={cell['token_budget']}: wd {cell['weight_decay']:g} "
                    f"({cell['weight_decay'] / t['baseline_wd']:.0f}x default)\n{verdict}", fontsize=7,
                    color="k" if cell["certified"] else "r")
        a.set_xlabel("weight decay", fontsize=7)
        a.set_ylabel("epochs", fontsize=7)
        a.grid(False)
    fig.colorbar(im, ax=fig.axes, shrink=0.8, label="validation loss (best lr)")
    fig.suptitle("Regularized search: loss over weight decay x epochs (red box: selected)", fontsize=9)


@figure(
    "params",
    'Validation loss against non-embedding parameters N for the baseline recipe (default '
    'weight decay, searched epochs and lr) and the regularized recipe (lr, weight decay and '
    'epochs searched jointly). Each point is its selected recipe\'s mean loss over its reseeds, with '
    'its standard error as a bar (the selected run\'s own loss, which won the search and so is '
    'biased low, is the faint dash); open markers are selections whose local optimality is not '
    'certified. Fits are power laws L = A/N^alpha + E weighted by those errors; a dotted line is an '
    'asymptote E near the points, its band the profile-likelihood CI where both ends are determined. '
    'The legend gives E and its CI ("not determined": the data allow any value on that side); a fit '
    'the points reject (misfit) or that determines no asymptote is drawn as points only.',
)
def fig_params(t, ax, fig):
    fits, tuning = t["fits"], t["tuning"]
    fits = fits[(fits["fit"] == "params") & (fits["n_points"] > 1)]  # a lone size is no curve
    if fits.empty:
        return _empty(ax, "searches over several sizes")
    certified = dict(zip(tuning["run_id"], tuning["certified"]))
    selected = dict(zip(tuning["run_id"], tuning["loss"]))  # the search's minimum: biased low
    span, biased = _Span(), False
    for i, (_, row) in enumerate(fits.iterrows()):
        color = f"C{i}"
        x, y = np.asarray(row["x"], float), np.asarray(row["y"], float)
        ok = np.array([bool(certified.get(r, False)) for r in row["point_ids"]])
        label = f"{row['recipe']} ({row['group']})"
        fitted = row["status"] == "ok"
        _points(ax, span, x, y, _errors(row, len(y)), color, hollow=~ok, label=None if fitted else
                f"{label}: {_short(row['status'])}, no curve")
        sel = np.array([selected.get(r, np.nan) for r in row["point_ids"]], float)
        own = np.isfinite(sel) & ~np.isclose(sel, y, rtol=0, atol=1e-9)  # a point that is a reseed mean
        if own.any():
            ax.plot(x[own], sel[own], "_", color=color, alpha=0.5, ms=9, mew=1.5, zorder=2)
            span.add(sel[own])
            biased = True
        if fitted:
            _fit_curve(ax, span, row, x.min() * 0.7, x.max() * 4, color, f"{label}: {_law(row)}")
    if biased:
        ax.plot([], [], "_", color="grey", alpha=0.6, ms=9, mew=1.5, label="selected run (biased low)")
    span.finish(ax)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("validation loss (mean over reseeds)")
    ax.set_title("Loss vs N: L = A / N^alpha + E (bars: standard errors; open: optimum not certified)", fontsize=9)
    _legend(ax, fig)


def _short(status: str) -> str:
    """A fit's status in a few words, for a legend, title or table cell (the paper has it whole)."""
    import re

    kind = status.split(":")[0]
    if kind == "misfit":
        p = re.search(r"p = ([^ )<]+)", status)
        return "misfit: the points reject the law" + (f" (p = {p.group(1)})" if p else "")
    return {"failed": "fit failed", "flat": "flat, no asymptote", "no asymptote": "no asymptote (E at 0)",
            "step": "a step at the smallest x, no law"}.get(kind, kind)


def _main_budget(df):
    """The token budget most rows share: where per-N figures are drawn."""
    return int(df["token_budget"].value_counts().idxmax())


@figure(
    "ensembles",
    "Ensemble loss against members K at the study's main token budget (log of the mean of "
    'member probabilities, from saved per-token log-probs; points are the mean over member '
    'subsets of size K, thin bars the standard error of the curve from its recipe\'s seed noise '
    'where measured, wide faint bars the spread over member subsets), with the power law in K per '
    'model whose asymptote E is the K -> infinity loss (legend: E and its CI, "not determined" on a '
    'side the data do not bound; a fit that is not "ok" is drawn as points only). {member_rule}',
)
def fig_ensembles(t, ax, fig):
    """Claim 3: per N, the ensemble loss falls as a power law in K to a K -> inf asymptote."""
    ens, fits = t["ensembles"], t["fits"]
    if ens.empty:
        return _empty(ax, "ensembles")
    budget = _main_budget(ens)
    ens = ens[ens["token_budget"] == budget]
    order = ens.groupby("ensemble")["non_embedding_params"].first().sort_values()
    span = _Span()
    for i, name in enumerate(order.index):
        g = ens[ens["ensemble"] == name].sort_values("ensemble_size")
        color = f"C{i}"
        k, y, spread = (g[c].to_numpy(float) for c in ("ensemble_size", "loss_mean", "loss_std"))
        row = fits[(fits["fit"] == "ensemble") & (fits["group"] == name)]
        r = row.iloc[0] if not row.empty else None
        se = None
        if r is not None:
            se_fit = _errors(r, len(r["x"]))
            if se_fit is not None:  # the fit's points are these sizes' means
                se = np.array([dict(zip(np.asarray(r["x"], float), se_fit)).get(v, np.nan) for v in k])
        ax.errorbar(k, y, yerr=np.nan_to_num(spread), fmt="none", ecolor=color, elinewidth=4, alpha=0.2)
        span.add(y - np.nan_to_num(spread), y + np.nan_to_num(spread))
        label = f"{name} (N={order[name] / 1e6:.2f}M)"
        fitted = r is not None and r["status"] == "ok"
        status = "" if fitted else (f": {_short(r['status'])}, no curve" if r is not None else ": no fit")
        _points(ax, span, k, y, se, color, ms=4, label=None if fitted else label + status)
        if fitted:
            _fit_curve(ax, span, r, 1, k.max() * 4, color, f"{label}: K -> inf {_law(r)}")
    ax.plot([], [], "|", color="grey", alpha=0.35, ms=10, mew=4, label="spread over member subsets")
    span.finish(ax)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ensemble members K")
    ax.set_ylabel("ensemble validation loss (mean over member subsets)")
    ax.set_title(f"Ensembles at D={budget}: L = A / K^alpha + E (bars: standard errors; faint: spread)", fontsize=9)
    _legend(ax, fig)


@figure(
    "joint",
    "The K -> infinity asymptote of each model's ensemble (bars: its profile-likelihood CI; an "
    "arrow: an end the data do not bound) against N, with the power-law fit over N whose asymptote "
    "is the joint (N, K -> infinity) loss; beside it the regularized single models (each its mean "
    "over reseeds, bars their standard errors) and their N -> infinity asymptote. The paper's claim "
    "3: the joint asymptote lies below the regularized one. Dotted lines are asymptotes near the "
    "points; the legend gives each with its CI.",
)
def fig_joint(t, ax, fig):
    """Claims 2-3: the K -> inf asymptotes over N with the joint fit, beside the regularized L(N)."""
    fits = t["fits"]
    per_k = fits[(fits["fit"] == "ensemble") & (fits["status"] == "ok") & (fits["recipe"] != "fixed")]
    if per_k.empty:
        return _empty(ax, "ensembles of a search at several sizes")
    budget = _main_budget(per_k)
    per_k = per_k[per_k["token_budget"] == budget]
    span, open_ci = _Span(), False
    for i, (recipe, g) in enumerate(per_k.groupby("recipe")):
        color = f"C{i}"
        g = g.sort_values("non_embedding_params")
        open_ci |= _ci_points(ax, span, g["non_embedding_params"], g["E"], g["E_ci_low"], g["E_ci_high"], color,
                              label=f"{recipe}: K -> inf asymptote per N (CI)")
        joint = fits[(fits["fit"] == "joint") & (fits["recipe"] == recipe) & (fits["token_budget"] == budget)]
        if joint.empty:
            continue
        r = joint.iloc[0]
        if r["status"] == "ok":
            _fit_curve(ax, span, r, min(r["x"]) * 0.7, max(r["x"]) * 4, color,
                       f"{recipe} joint fit, N, K -> inf: {_law(r)}")
        else:
            ax.plot([], [], ls="none", label=f"{recipe} joint fit: {_short(r['status'])}, no curve")
    reg = fits[(fits["fit"] == "params") & (fits["recipe"] == "regularized") & (fits["token_budget"] == budget)]
    if not reg.empty:
        r = reg.iloc[0]
        y = np.asarray(r["y"], float)
        fitted = r["status"] == "ok"
        _points(ax, span, r["x"], y, _errors(r, len(y)), "k",
                label="regularized single models" + ("" if fitted else f": {_short(r['status'])}, no curve"))
        if fitted:
            _fit_curve(ax, span, r, min(r["x"]) * 0.7, max(r["x"]) * 4, "k", f"regularized, N -> inf: {_law(r)}")
    if open_ci:
        _open_ci_key(ax)
    span.finish(ax)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("validation loss")
    ax.set_title(f"Joint scaling at D={budget}: ensembles' K -> inf asymptotes over N (dotted: asymptotes)", fontsize=9)
    _legend(ax, fig)


@figure(
    "asymptotes",
    "Asymptotes E (with their profile-likelihood CIs; n.d.: an end the data do not bound, any value "
    "on that side) per model and token budget: each ensemble's K -> infinity loss, and per budget "
    "the regularized recipe's N -> infinity and the ensembles' joint N, K -> infinity asymptotes; a "
    'fit that determines no asymptote gives its status.',
)
def fig_asymptotes(t, ax, fig):
    """The N x D table of asymptotes: K -> inf per (N, D), and per D the N -> inf and joint ones."""
    fits = t["fits"]
    fitted = fits[~fits["status"].str.startswith("too few")]  # a failed fit is shown as failed
    per_k = fitted[(fitted["fit"] == "ensemble") & (fitted["recipe"] != "fixed")]
    overall = fitted[fitted["fit"].isin(["params", "joint"])]
    if per_k.empty and overall.empty:
        return _empty(ax, "asymptotes (fits with 3+ points)")
    budgets = sorted({int(b) for b in pd_values(per_k["token_budget"]) + pd_values(overall["token_budget"])})

    def cell(f):
        if f.empty:
            return "-"
        r = f.iloc[0]
        if r["status"] != "ok":
            return f"{_short(r['status']).replace(': the points reject the law', '')}\n({len(r['x'])} points)"
        lo, hi = (_end(r[k], ".2f").replace("not determined", "n.d.") for k in ("E_ci_low", "E_ci_high"))
        return f"{r['E']:.3f}\n[{lo}, {hi}]"

    rows, labels = [], []
    for (recipe, model), g in per_k.groupby(["recipe", "model"]):
        n = int(g["non_embedding_params"].iloc[0])
        labels.append((n, f"{recipe} {model} (N={n / 1e6:.2f}M), K -> inf"))
        rows.append([cell(g[g["token_budget"] == b]) for b in budgets])
    order = sorted(range(len(rows)), key=lambda i: labels[i][0])
    rows, labels = [rows[i] for i in order], [labels[i][1] for i in order]
    for (fit, recipe), g in overall.groupby(["fit", "recipe"]):
        labels.append(f"{recipe}, {'N -> inf' if fit == 'params' else 'N, K -> inf'}")
        rows.append([cell(g[g["token_budget"] == b]) for b in budgets])
    ax.axis("off")
    table = ax.table(cellText=rows, rowLabels=labels, colLabels=[f"D={b}" for b in budgets], loc="center",
                     cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(6)
    table.scale(1, 2.2)
    ax.set_title("Asymptotes E [CI] (n.d.: not determined; -: not fitted)", fontsize=9)


def pd_values(col) -> list:
    return [v for v in col.tolist() if v is not None and np.isfinite(v)]


@figure(
    "tokens",
    "Token scaling: per token budget D, the regularized single models' N -> infinity "
    "asymptote and the ensembles' joint N, K -> infinity asymptote (bars: their profile-likelihood "
    "CIs; an arrow: an end the data do not bound), against the baseline's loss per D (bars: standard "
    "errors) and its fitted law L(D). Labels give each asymptote's data-efficiency multiplier against "
    "L(D) at that budget; the paper's claim 4 is that such multipliers hold across budgets.",
)
def fig_tokens(t, ax, fig):
    """Claim 4: per token budget, each recipe's asymptote (N -> inf; N, K -> inf) against the baseline's
    L(D), each labelled with its data-efficiency multiplier."""
    fits, eff = t["fits"], t["efficiency"]
    ok = fits[fits["status"] == "ok"]
    asym = ok[ok["fit"].isin(["params", "joint"])]
    data = fits[fits["fit"] == "data"]
    if asym.empty and (data.empty or not len(data.iloc[0]["x"])):
        return _empty(ax, "asymptotes at several token budgets")
    span, open_ci = _Span(), False
    if not data.empty and len(data.iloc[0]["x"]):
        r = data.iloc[0]
        y = np.asarray(r["y"], float)
        fitted = r["status"] == "ok"
        _points(ax, span, r["x"], y, _errors(r, len(y)), "k",
                label="baseline, best per D" + ("" if fitted else f": L(D) {_short(r['status'])}, no curve"))
        if fitted:
            _fit_curve(ax, span, r, min(r["x"]) * 0.7, max(r["x"]) * 1.5, "k",
                       f"baseline L(D): {_law(r)}")
    for i, ((fit, recipe), g) in enumerate(asym.groupby(["fit", "recipe"])):
        g = g.sort_values("token_budget")
        color = f"C{i + 1}"
        x, y = g["token_budget"].to_numpy(float), g["E"].to_numpy(float)
        open_ci |= _ci_points(ax, span, x, y, g["E_ci_low"], g["E_ci_high"], color, ls="-",
                              label=f"{recipe}: asymptote {LIMITS[fit]} (CI)")
        for xi, yi in zip(x, y):
            m = eff[(eff["recipe"] == recipe) & (eff["label"] == ASYMPTOTE_LABELS[fit]) & (eff["token_budget"] == xi)]
            if not m.empty:
                v = m.iloc[0]["data_efficiency"]
                ax.annotate(f"x{v:.1f}" if np.isfinite(v) else "x inf", (xi, yi), textcoords="offset points",
                            xytext=(4, -10), fontsize=6, color=color)
    if open_ci:
        _open_ci_key(ax)
    span.finish(ax)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("token budget D")
    ax.set_ylabel("validation loss")
    ax.set_title("Token scaling: asymptotes per budget vs the baseline's L(D) (labels: data multipliers)", fontsize=9)
    _legend(ax, fig)


@figure(
    "data_scaling",
    "The baseline's data-scaling law L(D) (its points: the baseline's loss per D, bars their "
    "standard errors) and each recipe's effective token count at the study's main budget (stars, "
    "bars the standard error of its loss): its data-efficiency multiplier is D_eff(its loss) / "
    "D_eff(the baseline's loss at the same D).",
)
def fig_data_scaling(t, ax, fig):
    fits, eff = t["fits"], t["efficiency"]
    row = fits[fits["fit"] == "data"]
    if row.empty or not len(row.iloc[0]["x"]):
        return _empty(ax, "baseline runs")
    r = row.iloc[0]
    y = np.asarray(r["y"], float)
    span = _Span()
    fitted = r["status"] == "ok"
    _points(ax, span, r["x"], y, _errors(r, len(y)), "C0",
            label="baseline (wd default), best per D" + ("" if fitted else f": L(D) {_short(r['status'])}, no curve"))
    if fitted:
        _fit_curve(ax, span, r, min(r["x"]) * 0.7, max(r["x"]) * 8, "C0", f"L(D): {_law(r)}")
        shown = eff[(eff["recipe"] != "baseline") | eff["label"].str.startswith("asymptote")]
        if not shown.empty:  # the main budget's points; the `tokens` figure has every budget's asymptotes
            shown = shown[shown["token_budget"] == _main_budget(shown)]
        for i, (_, e) in enumerate(shown.iterrows()):
            # an asymptote or an ensemble by its label, a recipe's best run (its run id) as such
            kind = e["label"] if "asymptote" in e["label"] or e["recipe"] == "ensemble" else "best run"
            what = f"{e['recipe']} {kind} at D={e['token_budget']}"
            se = e["loss_se"] if "loss_se" in e and _finite(e["loss_se"]) else None
            span.add(e["loss"])
            if not np.isfinite(e["effective_tokens"]):  # below the law's own asymptote
                ax.axhline(e["loss"], color=f"C{i + 1}", ls="--", lw=1, label=f"{what}: below L(D)'s E, no finite D")
                continue
            ax.errorbar([e["effective_tokens"]], [e["loss"]], yerr=None if se is None else [se], fmt="*", ms=9,
                        color=f"C{i + 1}", capsize=2, label=f"{what}: x{e['data_efficiency']:.2f} data")
            if se is not None:
                span.add(e["loss"] - se, e["loss"] + se)
    else:
        ax.set_title(f"Baseline data scaling: {_short(r['status'])}")
    span.finish(ax)
    ax.set_xscale("log")
    ax.set_xlabel("tokens D (stars: effective tokens of a recipe)")
    ax.set_ylabel("validation loss")
    _legend(ax, fig, 7)


@figure(
    "efficiency",
    "Data-efficiency multipliers D_eff / D against the baseline's fitted data-scaling law "
    "L(D): for each recipe's best run, each fixed ensemble, and the asymptotes (N -> "
    "infinity, K -> infinity, joint), with CIs that combine the baseline law's bootstrap "
    "refits with the losses' standard errors (an asymptote's from its own CI); each bar's label "
    'gives its CI ("not determined": an end the data do not bound). A loss below L(D)\'s own '
    'asymptote is reached by no amount of baseline data (unbounded).',
)
def fig_efficiency(t, ax, fig):
    """Data-efficiency multipliers of every recipe against the baseline's L(D), with CIs."""
    eff = t["efficiency"]
    if eff.empty:
        return _empty(ax, "a baseline data-scaling law (3+ budgets)")
    eff = eff.sort_values(["token_budget", "data_efficiency"])
    labels = [f"{e['recipe']}: {e['label']} (D={e['token_budget']})" for _, e in eff.iterrows()]
    values = eff["data_efficiency"].to_numpy(float)
    shown = np.where(np.isfinite(values), values, np.nan)
    y = np.arange(len(values))
    lo = np.abs(shown - eff["data_efficiency_ci_low"].to_numpy(float))
    hi = np.abs(eff["data_efficiency_ci_high"].to_numpy(float) - shown)
    xerr = np.where(np.isfinite([lo, hi]), [lo, hi], 0)
    colors = [f"C{['baseline', 'regularized', 'ensemble'].index(r) if r in ('baseline', 'regularized', 'ensemble') else 3}"
              for r in eff["recipe"]]
    finite_vals = shown[np.isfinite(shown) & (shown > 0)]
    base = 10 ** np.floor(np.log10(min(finite_vals.min(), 1.0) * 0.5)) if finite_vals.size else 0.1
    ax.barh(y, np.nan_to_num(shown, nan=base) - base, left=base, xerr=xerr, color=colors, capsize=2)
    for yi, v, lo_, hi_ in zip(y, values, eff["data_efficiency_ci_low"], eff["data_efficiency_ci_high"]):
        ci = f", {_ci(lo_, hi_, '.2f')}" if not np.isinf(hi_) else f", CI [{_end(lo_, '.2f')}, unbounded]"
        ax.text(v if np.isfinite(v) else base, yi, f" x{v:.2f}{ci}" if np.isfinite(v) else " below L(D)'s E: unbounded",
                va="center", fontsize=6)
    ax.axvline(1, color="grey", lw=1, ls="--")
    ax.set_yticks(y, labels, fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("data-efficiency multiplier D_eff / D (baseline = 1)")
    ax.set_title("Data efficiency vs the baseline's L(D) (error bars: CIs)", fontsize=9)


@figure(
    "distillation",
    "Distillation: validation loss of a single model of the teacher's recipe, the teacher (an "
    'ensemble or a single model) and the student trained on real plus teacher-sampled tokens.',
)
def fig_distillation(t, ax, fig):
    """Claims 5-6: per student size and budget, the baseline and regularized single models, each
    teacher, and the distilled (ensemble teacher) and self-distilled (single teacher) students."""
    dist, runs, tuning = t["distillation"], t["runs"], t["tuning"]
    if dist.empty:
        return _empty(ax, "distillation")
    student = runs.set_index("run_id").loc[dist["student_id"], ["model", "token_budget"]].reset_index(drop=True)
    dist = pd.concat([dist.reset_index(drop=True), student], axis=1)
    labels, values, colors = [], [], []

    def bar(label, value, color):
        labels.append(label)
        values.append(value)
        colors.append(color)

    for (model, budget), g in dist.groupby(["model", "token_budget"], sort=True):
        where = f"{model} D={budget}"
        for i, recipe in enumerate(("baseline", "regularized")):
            sel = tuning[(tuning["recipe"] == recipe) & (tuning["model"] == model) & (tuning["token_budget"] == budget)]
            if not sel.empty:
                bar(f"{where}\n{recipe}", sel["loss"].min(), f"C{i}")
        for _, d in g.iterrows():
            if d["teacher_kind"] == "ensemble":
                bar(f"{where}\nteacher {d['teacher']}\n(K={d['teacher_size']})", d["teacher_loss"], "C2")
                kept = f"\n{d['fraction_of_gain_kept']:.0%} of gain" if np.isfinite(d["fraction_of_gain_kept"]) else ""
                bar(f"{where}\ndistilled: {d['distillation']}{kept}", d["student_loss"], "C3")
            else:
                bar(f"{where}\nself-distilled: {d['distillation']}", d["student_loss"], "C4")
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=5, rotation=30, ha="right")
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=5)
    lo = min(values)
    ax.set_ylim(lo - 0.1 * (max(values) - lo + 1e-3) - 0.05, max(values) + 0.05)
    ax.set_ylabel("validation loss")
    ax.set_title("Distillation: single models, teachers and students (same size and real data)", fontsize=9)


@figure(
    "benchmarks",
    'Downstream accuracy through lm-eval-harness against validation loss, per task (marker) and model '
    'family (colour): by default two multiple-choice tasks built from held-out text, '
    'heldout_next_line ("which line comes next?", 4 choices) and heldout_minimal_pairs (a line '
    'against a copy with two words swapped that no longer compiles). Ensembles score each choice by '
    "the mixture of their members' per-token probabilities. Bars: standard errors; dashed: each "
    "task's chance.",
)
def fig_benchmarks(t, ax, fig):
    """Accuracy against validation loss per task and model family, with each task's chance."""
    b = t["benchmarks"]
    tasks = sorted(b["task"].unique())
    families = sorted(b["family"].unique())
    markers = "osD^v<>"
    for j, task in enumerate(tasks):
        g_task = b[b["task"] == task]
        for i, fam in enumerate(families):
            g = g_task[g_task["family"] == fam]
            if not g.empty:
                ax.errorbar(g["loss"], g["acc"], yerr=g["acc_stderr"], fmt=markers[j % len(markers)], ms=3,
                            color=f"C{i}", capsize=2, alpha=0.8, label=fam if j == 0 else None)
        ax.axhline(g_task["chance"].mean(), color="grey", ls="--", lw=1)
        ax.plot([], [], markers[j % len(markers)], color="k", ms=3, label=task)
    ax.set_xlabel("validation loss")
    ax.set_ylabel("accuracy")
    ax.set_title(f"lm-eval-harness: {', '.join(tasks)} vs loss", fontsize=9)
    ax.legend(fontsize=6)


def _ticker():
    import matplotlib.ticker  # once _plt() has chosen the backend

    return matplotlib.ticker


@figure(
    "cpt",
    'Continued pre-training on math from a model of the study: held-out exact-match accuracy '
    "(greedy answers) per recipe at the recipes' math budget: the default recipe, a smaller "
    'batch, more epochs with the selected weight decay, and the ensemble of the latter '
    '(answers from the mixture of its members). Labels: held-out math loss and the '
    "data-efficiency multiplier against the default recipe's math data-scaling law (inset: "
    'its points, bars their standard errors where measured, and its fit).',
)
def fig_cpt(t, ax, fig):
    """CPT on math: held-out answer accuracy per recipe at the recipes' budget, labelled with the
    loss and its data-efficiency multiplier against the default recipe's math L(D); beside it the
    default recipe at every budget."""
    c = t.get("cpt")
    if c is None or c.empty:
        _empty(ax, "continued pre-training (config key `cpt`)")
        return
    top = c[c["recipe"] == "ensemble"]
    top = top[top["ensemble_size"] == top["ensemble_size"].max()]
    budget = int(top["token_budget"].iloc[0]) if not top.empty else int(c["token_budget"].max())
    at = c[c["token_budget"] == budget]
    bars = [("default", at[at["recipe"] == "default"]), ("small batch", at[at["recipe"] == "small-batch"]),
            ("more epochs + wd", at[(at["recipe"] == "regularized") & at["selected"]]),
            (f"ensemble K={int(top['ensemble_size'].iloc[0]) if not top.empty else 0}", top)]
    bars = [(name, g.iloc[0]) for name, g in bars if not g.empty]
    xs = np.arange(len(bars))
    ax.bar(xs, [r["accuracy"] for _, r in bars], yerr=[r["accuracy_stderr"] for _, r in bars],
           color=[f"C{i}" for i in range(len(bars))], capsize=3)
    for x, (_, r) in zip(xs, bars):
        m = r["data_efficiency"]
        mult = "n/a" if not np.isfinite(m) else f"{m:.2f}x"
        ax.text(x, r["accuracy"] + np.nan_to_num(r["accuracy_stderr"]), f"loss {r['loss']:.3f}\n{mult}", ha="center",
                va="bottom", fontsize=7)
    ax.set_xticks(xs, [name for name, _ in bars], fontsize=8)
    ax.set_ylabel(f"held-out answer accuracy (exact match, {int(bars[0][1]['n_questions'])} questions)")
    ax.set_title(f"CPT on math from {c['base'].iloc[0]}, {budget} math tokens\n"
                 "(label: held-out loss and data-efficiency multiplier vs the default recipe's L(D))", fontsize=8)
    # the bars and their labels below the inset (top right, from 0.62 of the height)
    ax.set_ylim(0, max(0.05, max(r["accuracy"] + r["accuracy_stderr"] for _, r in bars) * 2.2))
    d = c[c["recipe"] == "default"].sort_values("token_budget")
    inset = ax.inset_axes([0.70, 0.62, 0.28, 0.3])
    fits = t.get("cpt_fits")
    f = fits.iloc[0] if fits is not None and not fits.empty else None
    span, se = _Span(), None
    if f is not None:  # the fit's points are these losses: its errors are theirs
        se_fit = _errors(f, len(f["x"]))
        if se_fit is not None:
            se = np.array([dict(zip(np.asarray(f["x"], float), se_fit)).get(float(b), np.nan) for b in d["token_budget"]])
    _points(inset, span, d["token_budget"], d["loss"], se, "C0", ms=3)
    title = "default recipe: L(D)"
    if f is not None and f["status"] == "ok":
        xs_ = np.geomspace(d["token_budget"].min(), d["token_budget"].max(), 50)
        inset.plot(xs_, f["A"] / xs_ ** f["alpha"] + f["E"], color="C0", lw=1)
        span.add(f["A"] / xs_ ** f["alpha"] + f["E"])
    elif f is not None:
        title += f"\n{_short(f['status'])}, no curve"
    span.finish(inset)
    inset.set_xscale("log")
    inset.xaxis.set_minor_locator(_ticker().NullLocator())
    inset.set_xticks(list(d["token_budget"]), [f"{b / 1024:g}k" for b in d["token_budget"]])
    inset.set_title(title, fontsize=6)
    inset.tick_params(labelsize=5)


VERDICT_COLOURS = {"reproduced": "#bfe3c0", "not reproduced": "#f4c2c2", "not determined": "#e6e6e6"}


@figure(
    "claims",
    "The claims scorecard (results/claims.parquet): each claim of the paper, this study's verdict "
    "by a criterion fixed in science/claims.py before the results, and the reason. Green: "
    "reproduced; red: not reproduced; grey: not determined (a quantity the criterion needs is "
    "missing or its fit did not determine it).",
)
def fig_claims(t, ax, fig):
    c = t.get("claims")
    if c is None or c.empty:
        return _empty(ax, "a claims scorecard")
    ax.axis("off")
    cells = [[r.claim, textwrap.fill(r.statement, 48), r.verdict, textwrap.fill(r.reason, 44)] for r in c.itertuples()]
    table = ax.table(cellText=cells, colLabels=["claim", "the paper says", "verdict", "why"], loc="center",
                     cellLoc="left", colWidths=[0.06, 0.4, 0.16, 0.38])
    table.auto_set_font_size(False)
    table.set_fontsize(5)
    for i, r in enumerate(c.itertuples(), start=1):
        lines = max(cells[i - 1][1].count("\n"), cells[i - 1][3].count("\n")) + 1
        for j in range(4):
            table[i, j].set_height(0.035 * lines + 0.02)
        table[i, 2].set_facecolor(VERDICT_COLOURS.get(r.verdict, "white"))
    ax.set_title("Which of the paper's claims this study reproduces", fontsize=9)


@figure(
    "floor",
    "On a corpus of known entropy (data.source: synthetic): every fitted asymptote per token budget "
    "with its profile-likelihood CI (an arrow: an end the data do not bound) (the regularized N -> inf, "
    "the ensembles' joint N, K -> inf and each ensemble's K -> inf), the loss floor the source's "
    "entropy sets (nats per token at the study's context), and E(D) = A / D^beta + E_inf through the "
    "regularized asymptotes with E_inf's CI (a band where both ends are determined; the legend gives "
    "it) (claims F1, F2 of the scorecard).",
)
def fig_floor(t, ax, fig):
    c = t.get("claims")
    rows = {} if c is None else {r.claim: json.loads(r.quantities) for r in c.itertuples()}
    if "F1" not in rows:
        return _empty(ax, "a corpus of known entropy (data.source: synthetic)")
    floor = rows["F1"]["floor"]
    f = t["fits"]
    kinds = (("params", "regularized", "regularized N -> inf", "C0", "o"), ("joint", None, "joint N, K -> inf", "C1", "s"),
             ("ensemble", None, "K -> inf per ensemble", "C2", "."))
    span, open_ci = _Span(), False
    for kind, recipe, label, colour, marker in kinds:
        g = f[(f["fit"] == kind) & (f["status"] == "ok")]
        if recipe:
            g = g[g["recipe"] == recipe]
        if g.empty:
            continue
        open_ci |= _ci_points(ax, span, g["token_budget"], g["E"], g["E_ci_low"], g["E_ci_high"], colour,
                              marker=marker, label=label)
    ax.axhline(floor, color="k", ls="--", lw=1, label=f"floor {floor:.3f} (the source's entropy)")
    span.add(floor)
    f2 = rows.get("F2", {})
    if _finite(f2.get("E_inf")) and len(f2.get("budgets", [])) >= 3:
        b = np.asarray(f2["budgets"], float)
        xs = np.geomspace(b.min(), b.max() * 8, 50)
        low, high = (f2.get("E_inf_ci") or [None, None])[:2]
        (line,) = ax.plot(xs, f2["A"] / xs ** f2["beta"] + f2["E_inf"], color="C0", lw=1,
                          label=f"E(D) fit: E_inf = {f2['E_inf']:.3f}, {_ci(low, high)}")
        span.add(f2["A"] / b ** f2["beta"] + f2["E_inf"])
        span.asymptote(f2["E_inf"], low, high, "C0", line)
    if open_ci:
        _open_ci_key(ax)
    span.finish(ax)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("token budget D")
    ax.set_ylabel("asymptote (nats per token)")
    ax.set_title("Fitted asymptotes against the known loss floor", fontsize=9)
    _legend(ax, fig)


FIGURES = tuple(REGISTRY)  # every figure, in the order they are defined above


def draw(name: str, tables: dict, out: str) -> None:
    """Figure `name` as a PNG at `out`, from `tables` (results.read_tables, plus the budgets' cache
    info as `budget_caches`, the corpus `manifest` and the `baseline_wd`)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown figure '{name}'; known: {FIGURES}")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    REGISTRY[name].draw(tables, ax, fig)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
