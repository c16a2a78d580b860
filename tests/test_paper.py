"""outputs/paper.py renders paper/paper.md.j2 from the result tables: rendered here from small synthetic
tables of known values, the comparisons and tables it writes carry those values, and a fit that
determines no asymptote is written as "not determined", never as a number."""

import json
import os

import pytest
from conftest import ROOT

from infinite_compute.outputs.paper import format_num, format_sig, render
from infinite_compute.outputs.results import SCHEMAS, TABLES, read_tables, write_table
from infinite_compute.science.analysis import ASYMPTOTE_LABELS

PROV = {"config_hash": "cafe1234", "code_version": "v-synthetic", "package_versions": "{}"}


def _row(kind: str, /, **values) -> dict:
    """A row of table `kind` with every column: the given values, empty lists and nulls elsewhere."""
    import pyarrow as pa

    row = {f.name: [] if pa.types.is_list(f.type) else None for f in SCHEMAS[kind]}
    unknown = set(values) - set(row)
    assert not unknown, unknown
    return {**row, **PROV, **values}


def _fit(fit, recipe, budget, E, lo, hi, status="ok", n=3, group=None):
    return _row("fits", fit=fit, recipe=recipe, group=group or f"D={budget}", token_budget=budget,
                x_name="non_embedding_params", x=[1.0, 2.0, 3.0][:n], y=[4.0, 3.9, 3.8][:n], point_ids=["a", "b", "c"][:n],
                A=12.5, alpha=0.75, E=E, A_stderr=0.5, alpha_stderr=0.05, E_stderr=0.02, A_ci_low=10.0, A_ci_high=15.0,
                alpha_ci_low=0.6, alpha_ci_high=0.9, E_ci_low=lo, E_ci_high=hi, ci_level=0.95, n_points=n,
                status=status)


FLAT = "flat: the loss does not fall with non_embedding_params over these points (alpha or A at 0), so E is not determined"
NO_ASYMPTOTE = "no asymptote: E is at its bound 0, the loss does not level off over these non_embedding_params"

# (budget, regularized N -> inf fit, joint N, K -> inf fit): E, CI low, CI high, status
CASES = {
    4096: ((3.8, 3.7, 3.9, "ok"), (3.9, 3.85, 3.95, "ok")),  # the joint asymptote is not lower
    8192: ((3.5, 3.4, 3.6, "ok"), (3.1, 3.0, 3.2, "ok")),  # lower, by 0.4
    16384: ((3.2, 3.1, 3.3, "ok"), (2.7777, 2.5, 2.9, FLAT)),  # the joint fit is flat
    32768: ((0.0, 0.0, 0.1, NO_ASYMPTOTE), (2.5, 2.4, 2.6, "ok")),  # the regularized fit has no asymptote
}
# the efficiency rows of the asymptotes (fits "ok" only): baseline loss at D, multiplier and its CI
EFFICIENCY = {
    ("regularized", "params", 4096): (4.25, 1.75, 1.5, 2.0),
    ("regularized", "params", 8192): (4.0, 2.5, 2.0, 3.125),
    ("regularized", "params", 16384): (3.75, 2.25, 1.875, 2.75),
    ("reg-ens", "joint", 4096): (4.25, 1.5, 1.25, 1.75),
    ("reg-ens", "joint", 8192): (4.0, 3.75, 3.0, 4.5),
    ("reg-ens", "joint", 32768): (3.5, float("inf"), 8.0, float("inf")),
}


@pytest.fixture(scope="module")
def synthetic_tables(tmp_path_factory):
    """The synthetic tables written as Parquet: (their paths as the rule lists them, the manifest's path)."""
    root = tmp_path_factory.mktemp("paper")
    results, data = root / "results", root / "data"
    os.makedirs(results)
    os.makedirs(data / "corpus")
    json.dump({"source": "synthetic", "documents": {"train": 10, "validation": 2}, "characters": {"train": 1000},
               "python": "3.11.9 (main)"}, open(data / "corpus" / "manifest.json", "w"))
    runs = [_row("runs", run_id="t1-d8k-ep2-lr0.01-wd0.1-s0", role="search", searches=["base-t1-d8k"], model="t1",
                 token_budget=8192, epochs=2, learning_rate=0.01, weight_decay=0.1, loss=4.5, diverged=False,
                 wall_seconds=2.0, tokens_seen=16384),
            _row("runs", run_id="t1-d8k-ep2-lr10000-wd0.1-s0", role="search", searches=["base-t1-d8k"], model="t1",
                 token_budget=8192, epochs=2, learning_rate=1e4, weight_decay=0.1, loss=float("nan"), diverged=True,
                 wall_seconds=1.0, tokens_seen=16384)]
    tuning = [_row("tuning", cell="reg-t1-d8k", search="reg", recipe="regularized", model="t1", non_embedding_params=100,
                   token_budget=8192, run_id="t1-d8k-ep2-lr0.01-wd0.4-s0", loss=4.4, learning_rate=0.01,
                   weight_decay=0.4, epochs=2, status="certified", certified=True, edges=[], on_grid=True, rounds=2,
                   n_trained=5, neighbours="[]")]
    fits = []
    for budget, (reg, joint) in CASES.items():
        fits.append(_fit("params", "regularized", budget, *reg))
        fits.append(_fit("joint", "reg-ens", budget, *joint))
    eff = []
    for (recipe, fit, budget), (base, mult, lo, hi) in EFFICIENCY.items():
        E = CASES[budget][0 if fit == "params" else 1][0]
        eff.append(_row("efficiency", recipe=recipe, label=ASYMPTOTE_LABELS[fit], token_budget=budget, loss=E,
                        baseline_loss=base, effective_tokens=mult * budget, data_efficiency=mult,
                        data_efficiency_ci_low=lo, data_efficiency_ci_high=hi))
    bench = [_row("benchmarks", model_id="t1-d8k-ep2-lr0.01-wd0.1-s0", kind="run", family="baseline", task="t",
                  loss=4.5, acc=0.5, acc_norm=0.5, n_items=4, chance=0.25)]
    for kind, rows in (("runs", runs), ("tuning", tuning), ("fits", fits), ("efficiency", eff),
                       ("benchmarks", bench), ("ensembles", []), ("distillation", [])):
        write_table(kind, rows, str(results / f"{kind}.parquet"))
    paths = [str(results / f"{kind}.parquet") for kind in TABLES]  # the tables as the rule lists them
    return paths, str(data / "corpus" / "manifest.json")


@pytest.fixture(scope="module")
def rendered(synthetic_tables):
    paths, manifest = synthetic_tables
    return render(os.path.join(ROOT, "paper", "paper.md.j2"), read_tables(paths), json.load(open(manifest)), 0.1)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _joint_sentence(paper: str, budget: int) -> str:
    """The paragraph on the joint asymptote at `budget`, on one line."""
    import re

    (par,) = [p for p in re.split(r"\n\s*\n", paper)
              if p.startswith(f"Joint asymptote of `reg-ens` at D={budget} (N, K -> inf):")]
    return _flat(par)


def test_the_joint_asymptote_is_compared_with_the_regularized_one(rendered):
    (E, lo, hi, _), (jE, jlo, jhi, _) = CASES[8192]
    assert _joint_sentence(rendered, 8192) == (
        f"Joint asymptote of `reg-ens` at D=8192 (N, K -> inf): **{format_num(jE)}** [{format_num(jlo)}, {format_num(jhi)}], "
        f"against the regularized single models' N -> inf asymptote {format_num(E)} [{format_num(lo)}, {format_num(hi)}]: "
        f"the ensembles' asymptote is lower by {format_num(E - jE)}."
    )
    assert format_num(E - jE) == "0.400"
    (E, lo, hi, _), (jE, jlo, jhi, _) = CASES[4096]
    assert _joint_sentence(rendered, 4096).endswith(
        f"asymptote {format_num(E)} [{format_num(lo)}, {format_num(hi)}]: the ensembles' asymptote is not lower.")


def test_an_asymptote_a_fit_does_not_determine_is_not_a_number(rendered):
    flat = _joint_sentence(rendered, 16384)
    assert flat == f"Joint asymptote of `reg-ens` at D=16384 (N, K -> inf): not determined ({FLAT})."
    assert format_num(CASES[16384][1][0]) not in flat
    (_, _, _, status), (jE, jlo, jhi, _) = CASES[32768]
    assert _joint_sentence(rendered, 32768) == (
        f"Joint asymptote of `reg-ens` at D=32768 (N, K -> inf): **{format_num(jE)}** [{format_num(jlo)}, {format_num(jhi)}]; "
        f"the regularized single models' N -> inf asymptote is not determined ({status})."
    )
    assert "lower by" not in _joint_sentence(rendered, 32768)


def test_the_token_scaling_table_has_each_determined_asymptote_and_its_multiplier(rendered):
    table = rendered[rendered.index("### Token scaling"):rendered.index("## Distillation")]
    rows = [r for r in table.splitlines() if r.startswith("| regularized |") or r.startswith("| reg-ens |")]
    expected = []
    for recipe, fit, limit in (("reg-ens", "joint", "N, K -> inf"), ("regularized", "params", "N -> inf")):
        for budget in sorted(CASES):
            E, lo, hi, status = CASES[budget][0 if fit == "params" else 1]
            if status != "ok":
                continue  # a fit that determines no asymptote has no row
            base, mult, mlo, mhi = EFFICIENCY[(recipe, fit, budget)]
            expected.append(f"| {recipe} | {limit} | {budget} | 3 | {format_num(E)} [{format_num(lo)}, {format_num(hi)}] | {format_num(base)} | "
                            f"{format_num(mult, 2)}x [{format_num(mlo, 2)}, {format_num(mhi, 2)}] |")
    assert rows == expected
    # below L(D)'s asymptote: an unbounded multiplier
    assert "| reg-ens | N, K -> inf | 32768 | 3 | 2.500 [2.400, 2.600] | 3.500 | infx [8.00, inf] |" in rows
    assert not any("| 16384 |" in r and r.startswith("| reg-ens |") for r in rows)  # the flat joint fit
    assert not any("| 32768 |" in r and r.startswith("| regularized |") for r in rows)  # no asymptote


def test_the_power_law_table_and_the_rest(rendered):
    E, lo, hi, _ = CASES[8192][0]
    assert (f"| params | regularized | D=8192 | 3 | {format_sig(12.5)} ± {format_sig(0.5)} [{format_sig(10.0)}, {format_sig(15.0)}] | "
            f"{format_num(0.75)} ± {format_num(0.05)} [{format_num(0.6)}, {format_num(0.9)}] | {format_num(E)} ± {format_num(0.02)} [{format_num(lo)}, {format_num(hi)}] | n/a | ok |"
            ) in rendered
    assert "config `cafe1234`, code `v-synthetic`" in rendered
    assert "Diverged runs (excluded from fits): `t1-d8k-ep2-lr10000-wd0.1-s0`" in rendered
    assert "t1 (D=8192) 0.4 = 4.0x." in rendered


def test_a_ci_end_the_data_do_not_bound_reads_not_determined():
    from infinite_compute.outputs.paper import _environment

    ci = _environment(os.path.join(os.path.dirname(__file__), "..", "paper", "paper.md.j2"), html=False).filters["ci"]
    assert ci(float("nan")) == "n.d." and ci(None) == "n.d." and ci(4.2915) == format_num(4.2915)


# --- the standalone HTML paper (paper/paper.html.j2), from the same synthetic tables ---

# the scorecard of the HTML tests: a verdict per claim, a reason with characters HTML must escape
VERDICTS = {"C1": ("reproduced", "all three hold"), "C2": ("not reproduced", "E's CI reaches 0 < 0.01 x loss & more"),
            "C3": ("not determined", "the joint fit is flat"), "C4": ("reproduced", "claims 2 and 3 hold at [8192]"),
            "C5": ("not reproduced", "the student is worse"), "C6": ("reproduced", "holds on t"),
            "C7": ("not determined", "the study has no CPT stage")}


def _png(width: int, height: int, rgb: tuple) -> bytes:
    """A PNG of one colour: the signature, IHDR, IDAT and IEND chunks (the format's minimum)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _html_args(synthetic_tables, root, figures: dict[str, bytes], out: str, claims: bool = True) -> list[str]:
    """The paper-html command line for the synthetic tables, the scorecard and `figures` (written as PNGs)."""
    from infinite_compute.science.claims import CLAIMS

    paths, manifest = synthetic_tables
    claims_path = os.path.join(root, "claims.parquet")
    write_table("claims", [_row("claims", claim=c, statement=CLAIMS[c], criterion=f"the criterion of {c}", verdict=v,
                                reason=r, quantities=json.dumps({"b": [1.5, 2.5], "a": c}))
                           for c, (v, r) in VERDICTS.items()], claims_path)
    fig_paths = []
    for name, data in figures.items():
        fig_paths.append(os.path.join(root, "figures", f"{name}.png"))
        os.makedirs(os.path.dirname(fig_paths[-1]), exist_ok=True)
        open(fig_paths[-1], "wb").write(data)
    captions = {name: f"What {name} shows." for name in figures}
    return ["paper-html", "--template", os.path.join(ROOT, "paper", "paper.html.j2"), "--tables", *paths,
            *([claims_path] if claims else []), "--manifest", manifest, "--baseline-wd", "0.1",
            "--figures", *fig_paths, "--captions", json.dumps(captions), "--out", out]


@pytest.fixture(scope="module")
def html_figures():
    """A PNG per figure of a study without the floor (not a synthetic corpus), each its own size, and
    one the paper's sections do not name (shown under "Other figures")."""
    from infinite_compute.outputs.figures import FIGURES

    names = [f for f in FIGURES if f != "floor"] + ["extra"]
    return {name: _png(20 + i, 10 + i, (i * 13 % 256, 80, 160)) for i, name in enumerate(names)}


@pytest.fixture(scope="module")
def html_paper(synthetic_tables, html_figures, tmp_path_factory):
    """The HTML paper rendered twice through the command (in this process), from two copies of the
    figures listed in another order: (first, second)."""
    from infinite_compute.cli import main

    pages = []
    for i, order in enumerate((list(html_figures), list(reversed(html_figures)))):
        root = tmp_path_factory.mktemp(f"html{i}")
        main(_html_args(synthetic_tables, root, {k: html_figures[k] for k in order}, str(root / "paper.html")))
        pages.append(open(root / "paper.html", "rb").read())
    return pages


def _section(page: str, sid: str) -> str:
    start = page.index(f'<section id="{sid}">')
    return page[start:page.index("</section>", start)]


def _text(fragment: str) -> str:
    """What a reader sees of an HTML fragment: its text, tags dropped, entities decoded, on one line."""
    import html
    import re

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _html_tables(page: str) -> list[list[list[str]]]:
    """Every <table> of the page as rows of cell texts (header row first)."""
    import re

    return [[[_text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
             for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
            for table in re.findall(r"<table[^>]*>(.*?)</table>", page, re.S)]


def _md_tables(md: str) -> list[list[list[str]]]:
    """Every Markdown table as rows of cell texts, Markdown's marks (code, bold) dropped."""
    tables, rows = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                rows.append([" ".join(c.replace("`", "").replace("**", "").split()) for c in line.strip("|").split(" | ")])
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def test_the_html_paper_is_the_same_bytes_every_time(html_paper):
    first, second = html_paper
    assert first == second  # same tables and figures, figures listed in another order: same bytes
    assert first.startswith(b"<!DOCTYPE html>\n")
    page = first.decode()
    assert "cafe1234" in page and "v-synthetic" in page  # the tables' provenance, not a time or a path
    assert str(ROOT) not in page and "/tmp" not in page


def test_the_html_paper_opens_with_the_scorecard_and_names_each_sections_claim(html_paper):
    import html

    from infinite_compute.outputs.paper import HTML_SECTIONS
    from infinite_compute.science.claims import CLAIMS

    page = html_paper[0].decode()
    sections = [sid for sid, *_ in HTML_SECTIONS if f'<section id="{sid}">' in page]
    assert sections == [sid for sid, *_ in HTML_SECTIONS if sid != "floor"]  # no floor claim or figure here
    assert page.index('id="claims-scorecard"') < min(page.index(f'<section id="{sid}">') for sid in sections)
    scorecard, *_ = _html_tables(page)
    assert scorecard == [["claim", "the paper says", "verdict", "why"]] + [
        [c, CLAIMS[c], v, r] for c, (v, r) in VERDICTS.items()]
    assert "reaches 0 &lt; 0.01 x loss &amp; more" in page and "0 < 0.01" not in page  # escaped: text, not markup
    for sid, _, ids, _ in HTML_SECTIONS:
        if sid == "floor":
            continue
        text = _text(_section(page, sid))
        for c in ids:
            verdict, reason = VERDICTS[c]
            assert f"The paper's claim {c}: {CLAIMS[c]} This study: {verdict} — {reason}" in text, sid
            assert f"the criterion of {c}" in text
    # the quantities behind a verdict, keys sorted
    assert '"a": "C1",\n "b": [\n  1.5,\n  2.5\n ]' in html.unescape(_section(page, "single-models"))


def test_the_html_paper_embeds_every_figure_in_its_section(html_paper, html_figures):
    import base64

    from infinite_compute.outputs.paper import HTML_SECTIONS, png_size

    page = html_paper[0].decode()
    assert page.count("<img ") == len(html_figures)
    where = {f: sid for sid, _, _, figs in HTML_SECTIONS for f in figs}
    for name, data in html_figures.items():
        width, height = png_size(data, name)
        img = (f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}" width="{width}" '
               f'height="{height}" alt="figure {name}">')
        assert page.count(img) == 1, name
        assert f"<figcaption><strong>{name}</strong>. What {name} shows.</figcaption>" in page, name  # its caption
        if name == "claims":  # the scorecard's figure, before the first section
            assert page.index(img) < page.index("<section ")
        else:
            assert img in _section(page, where.get(name, "other-figures")), name
    assert "<h2>Other figures</h2>" in _section(page, "other-figures")


def test_every_figure_of_the_registry_has_a_section():
    from infinite_compute.outputs.figures import FIGURES
    from infinite_compute.outputs.paper import HTML_SECTIONS, SCORECARD_FIGURES

    placed = [f for _, _, _, figs in HTML_SECTIONS for f in figs] + list(SCORECARD_FIGURES)
    assert sorted(placed) == sorted(FIGURES)  # each once: a new figure is placed, not left to "Other figures"


def test_the_html_papers_tables_are_the_markdown_papers(html_paper, synthetic_tables, tmp_path):
    """Every table of paper.md (rendered with the same scorecard) is in the HTML paper, cell for cell,
    and the HTML paper has no other table: both come from one context (outputs/paper.py)."""
    from infinite_compute.cli import main

    md = str(tmp_path / "paper.md")
    args = _html_args(synthetic_tables, tmp_path, {}, md)
    paths = args[args.index("--tables") + 1:args.index("--manifest")]
    main(["paper", "--template", os.path.join(ROOT, "paper", "paper.md.j2"), "--tables", *paths, "--manifest",
          args[args.index("--manifest") + 1], "--baseline-wd", "0.1", "--out", md])
    md_tables = _md_tables(open(md).read())
    html_tables = _html_tables(html_paper[0].decode())
    assert len(md_tables) == 7 and html_tables == md_tables  # the scorecard, cells, fits, ensembles, efficiency, token scaling, benchmarks
    # known values, as the Markdown tests check them: the token-scaling row of a joint asymptote below L(D)'s
    assert ["reg-ens", "N, K -> inf", "32768", "3", "2.500 [2.400, 2.600]", "3.500", "infx [8.00, inf]"] in html_tables[5]


def test_the_html_papers_sentences_are_the_markdown_papers(html_paper, rendered):
    """The joint asymptotes' comparisons read the same in both papers (the same numbers and words)."""
    page = _text(html_paper[0].decode())
    for budget in CASES:
        sentence = _joint_sentence(rendered, budget).replace("`", "").replace("**", "")
        assert sentence in page, budget
    assert "the ensembles' asymptote is lower by 0.400." in page


def test_bad_input_to_the_html_paper_is_an_error_naming_it(synthetic_tables, html_figures, tmp_path):
    from infinite_compute.cli import main

    out = str(tmp_path / "paper.html")
    args = _html_args(synthetic_tables, tmp_path, {"params": b"GIF89a not a png"}, out)
    with pytest.raises(ValueError, match=r"figures/params\.png: not a PNG image"):
        main(args)
    args = _html_args(synthetic_tables, tmp_path, {"params": html_figures["params"]}, out, claims=False)
    with pytest.raises(ValueError, match=r"claims scorecard: results/claims\.parquet"):
        main(args)
    args = _html_args(synthetic_tables, tmp_path, {"params": html_figures["params"]}, out)
    bad = tmp_path / "bad" / "runs.parquet"
    os.makedirs(bad.parent)
    bad.write_text("not parquet")
    args[args.index("--tables") + 1] = str(bad)
    with pytest.raises(ValueError, match=r"bad/runs\.parquet: not a readable Parquet table"):
        main(args)
    assert not os.path.exists(out)  # nothing written


def test_the_html_paper_fits_a_laptop_screen_in_a_browser(html_paper, html_figures, tmp_path):
    """The synthetic page in headless chromium at 1366x768 (a few seconds; tests/test_workflow.py does
    the same on the smoke study's page, with its real figures): every image shown, nothing wider than
    the window, every table in its own scroll box. Skipped, naming what is missing, without a browser."""
    from browser import LAPTOP, open_page

    page = tmp_path / "paper.html"
    page.write_bytes(html_paper[0])
    m, _ = open_page(str(page), str(tmp_path / "browser"), screenshot=False)
    assert m["inner_width"] == LAPTOP[0]
    assert m["images"] == m["images_loaded"] == m["images_inside"] == len(html_figures)
    assert m["scroll_width"] <= m["inner_width"], m
    assert m["tables"] == m["tables_in_a_scroll_box_inside_the_page"] == 7, m


# --- the figures of the fits (outputs/figures.py), drawn from small tables of known values ---

SIZES = [2e7, 5e7, 1.2e8, 3e8]


def _law_fit(recipe, budget, A, alpha, E, lo, hi, status="ok", se=0.005, **values):
    """A params fit whose points (reseed means, each with standard error `se`) lie on A / N^alpha + E."""
    y = [A / n**alpha + E for n in SIZES]
    return _row("fits", fit="params", recipe=recipe, group=f"D={budget}", token_budget=budget,
                x_name="non_embedding_params", x=SIZES, y=values.pop("y", y),
                point_ids=[f"{recipe}-{budget}-{i}" for i in range(4)],
                y_se=[se] * 4, noise="measured", noise_df=12.0, A=A, alpha=alpha, E=E, E_ci_low=lo, E_ci_high=hi,
                alpha_ci_low=float("nan"), alpha_ci_high=float("nan"), ci_level=0.95, n_points=4, status=status, **values)


def _drawn(name, tables):
    """Figure `name` drawn as the workflow draws it (outputs/figures.draw): (its figure, its axes, the
    texts of its legend)."""
    from infinite_compute.outputs import figures

    plt = figures._plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    figures.REGISTRY[name].draw(tables, ax, fig)
    legends = [ax.get_legend(), *fig.legends]
    return fig, ax, [t.get_text() for leg in legends if leg is not None for t in leg.get_texts()]


def test_a_params_figure_spans_its_points_when_an_asymptote_is_not_determined_below(tmp_path):
    """Points 4.31-5.49 (reseed means, standard errors 0.005) and E = 4.29 whose CI is open below: the
    y axis spans the points, not 0; the open end is said in the legend and drawn as no band; an E far
    below the points (its CI open too) stretches no axis; a misfit is points only; each point has its
    error bar and the selected run's own (biased low) loss is marked beside it."""
    import matplotlib.pyplot as plt
    import numpy as np

    from infinite_compute.outputs.results import read_table

    nan = float("nan")
    fits = [_law_fit("regularized", 8192, 1.2 * 2e7**1.5, 1.5, 4.29, nan, 4.31),  # y 5.49 ... 4.31
            _law_fit("regularized", 16384, 4.0 * 2e7**0.1, 0.1, 1.0, nan, nan),  # y 5.0 ... 4.05, E far below
            _law_fit("baseline", 8192, 3.0, 0.05, 2.0, 1.5, 2.5, y=[5.9, 5.3, 5.45, 4.9],
                     status="misfit: the points reject the law (chi-square 40.1 on 1 df, p = 2.4e-10 < 0.01)")]
    tuning = [_row("tuning", cell=f"c{i}", recipe=f["recipe"], run_id=rid, loss=y - 0.03, certified=True)
              for i, f in enumerate(fits) for rid, y in zip(f["point_ids"], f["y"])]
    write_table("fits", fits, str(tmp_path / "fits.parquet"))
    write_table("tuning", tuning, str(tmp_path / "tuning.parquet"))
    tables = {"fits": read_table(str(tmp_path / "fits.parquet")), "tuning": read_table(str(tmp_path / "tuning.parquet"))}

    fig, ax, legend = _drawn("params", tables)
    points = np.concatenate([f["y"] for f in fits])
    low, high = ax.get_ylim()
    assert 4.0 - 0.03 - 0.3 < low <= min(points) - 0.03 - 0.005  # the lowest point's selected run, not 0 (nor E = 1 or 2)
    assert max(points) + 0.005 <= high < max(points) + 0.3
    assert "regularized (D=8192): E = 4.290, CI [not determined, 4.310]; alpha = 1.50" in legend
    assert "regularized (D=16384): E = 1.000, CI not determined; alpha = 0.10 (below the axis)" in legend
    assert "baseline (D=8192): misfit: the points reject the law (p = 2.4e-10), no curve" in legend
    assert "selected run (biased low)" in legend
    assert not ax.patches  # no CI band: each CI here is open at an end
    levels = {round(float(line.get_ydata()[0]), 3) for line in ax.lines
              if len(set(np.asarray(line.get_ydata(), float))) == 1 and len(line.get_ydata()) == 2}
    assert levels == {4.29}  # the one asymptote near the points is a dotted line; E = 1 and the misfit's E = 2 are not
    curves = [line for line in ax.lines if len(line.get_xdata()) > 10]
    assert len(curves) == 2  # the misfit has no curve
    bars = [seg for c in ax.collections for seg in c.get_segments()]
    assert len(bars) == 12 and all(abs(s[1][1] - s[0][1] - 0.01) < 1e-9 for s in bars)  # +- 0.005 on every point
    plt.close(fig)


def test_an_open_ci_of_an_asymptote_is_an_arrow_not_a_bar_to_the_axis():
    """The joint figure: a K -> inf asymptote whose CI is open below has no error bar below it (an
    arrow says it), and the axis spans the asymptotes and the single models, not 0."""
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    nan = float("nan")
    ens = [_row("fits", fit="ensemble", recipe="reg-ens", group=f"e{i}", token_budget=8192, non_embedding_params=int(n),
                x=[1.0, 2.0, 4.0], y=[E + 0.3, E + 0.15, E + 0.08], A=0.3, alpha=1.0, E=E, E_ci_low=lo, E_ci_high=E + 0.05,
                n_points=3, status="ok")
           for i, (n, E, lo) in enumerate(zip(SIZES, [4.6, 4.4, 4.3, 4.25], [4.5, nan, 4.2, 4.2]))]
    fits = pd.DataFrame(ens + [_law_fit("regularized", 8192, 1.2 * 2e7**1.5, 1.5, 4.29, nan, 4.31)])
    fig, ax, legend = _drawn("joint", {"fits": fits})
    low, _ = ax.get_ylim()
    assert 3.9 < low < 4.2
    assert "arrow: CI not determined that way (any value)" in legend
    bars = [seg for c in ax.collections for seg in c.get_segments() if abs(seg[0][0] - SIZES[1]) < 1]
    ys = np.concatenate([np.asarray(s, float)[:, 1] for s in bars])
    assert ys.size and np.nanmin(ys) >= 4.4 - 1e-9  # nothing below the open asymptote at 4.4
    assert len([a for a in ax.texts if a.arrow_patch is not None]) == 1
    assert not np.isclose(low, 0)
    plt.close(fig)
