"""What can be checked about the documentation (issue 31): its relative links and their anchors resolve,
the figures and tables it names are ones the workflow draws and writes, and the configs it lists
validate against the schema and plan. In process, no Snakemake run: a few seconds."""

import copy
import glob
import os
import re

import pytest
import yaml
from conftest import ROOT, worked_example
from snakemake.utils import update_config, validate

SCHEMA = os.path.join(ROOT, "schemas", "config.schema.yaml")


def _docs() -> list[str]:
    files = ["README.md", "figures/README.md"]
    for pattern in ("docs/*.md", "bench/*.md"):
        files += sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
    return [f for f in files if os.path.exists(os.path.join(ROOT, f))]


DOCS = _docs()
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`(?:[^`\n]|\n(?![ \t]*\n))*`")  # inline code, which may wrap but not span a paragraph
# [text](target) and ![alt](target), the target up to a space (a title) or the closing parenthesis
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)


def _text(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation but '-' and '_' dropped,
    spaces to '-'."""
    h = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    h = h.replace("`", "").replace("*", "").strip().lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def anchors(path: str) -> set[str]:
    """Every heading's anchor in a Markdown file, repeats numbered -1, -2, ... as GitHub does."""
    seen: dict[str, int] = {}
    out = set()
    for line in _FENCE.sub("", _text(path)).splitlines():
        m = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    for m in re.finditer(r"<a\s+(?:name|id)=\"([^\"]+)\"", _text(path)):  # explicit anchors
        out.add(m.group(1))
    return out


def links(path: str) -> list[str]:
    prose = _prose(_text(path))
    return [m.group(1) for m in _LINK.finditer(prose)] + [m.group(1) for m in _REF.finditer(prose)]


def broken_links(path: str) -> list[str]:
    bad = []
    for target in links(path):
        if re.match(r"^(https?:|mailto:|ftp:)", target, re.I):
            continue
        file_part, _, anchor = target.partition("#")
        if file_part:
            resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(path), file_part))
        else:
            resolved = os.path.join(ROOT, path)  # #anchor: this file
        if os.path.commonpath([resolved, ROOT]) != ROOT:
            bad.append(f"{path}: {target} (outside the repository)")
        elif not os.path.exists(resolved):
            bad.append(f"{path}: {target} (no such file)")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(os.path.relpath(resolved, ROOT)):
            bad.append(f"{path}: {target} (no heading #{anchor} in {os.path.relpath(resolved, ROOT)})")
    return bad


def test_slug_follows_github():
    assert slug("The default study (config.yaml)") == "the-default-study-configyaml"
    assert slug("Importing runs from W&B") == "importing-runs-from-wb"
    assert slug("The synthetic study: a corpus of known entropy") == "the-synthetic-study-a-corpus-of-known-entropy"
    assert slug("`snakemake` and *you*") == "snakemake-and-you"


def test_every_relative_link_resolves():
    assert "README.md" in DOCS and any(d.startswith("docs/") for d in DOCS)
    bad = [b for d in DOCS for b in broken_links(d)]
    assert not bad, f"{len(bad)} broken link(s):\n" + "\n".join(bad)


# --- figures and tables named in README.md and docs/*.md ---

NAMED = ["README.md"] + [d for d in DOCS if d.startswith("docs/")]


# a worked example (docs/extending.md) adds a figure the registry does not have: up to the next heading
_WORKED = re.compile(r"<!-- worked example:.*?(?=^#|\Z)", re.M | re.S)


def _named(pattern: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for d in NAMED:
        for m in re.finditer(pattern, _WORKED.sub("", _text(d))):
            out.setdefault(m.group(1), set()).add(d)
    return out


def test_named_figures_are_registered():
    from infinite_compute.outputs.figures import FIGURES

    named = _named(r"figures/([A-Za-z0-9_\-]+)\.png")
    for name, where in _named(r"the `([A-Za-z0-9_\-]+)` figure").items():
        named.setdefault(name, set()).update(where)
    assert named, "no figure named in the docs: the patterns no longer match them"
    bad = sorted(f"{n} (in {', '.join(sorted(w))})" for n, w in named.items() if n not in FIGURES)
    assert not bad, f"figures the docs name that are not in outputs.figures.FIGURES {FIGURES}:\n" + "\n".join(bad)


def test_named_tables_are_written():
    from infinite_compute.outputs.results import OPTIONAL_TABLES, SCORECARD, TABLES

    kinds = set(TABLES) | set(OPTIONAL_TABLES) | {SCORECARD}
    named = _named(r"results/([A-Za-z0-9_]+)\.parquet")
    assert named, "no table named in the docs: the pattern no longer matches them"
    bad = sorted(f"{n} (in {', '.join(sorted(w))})" for n, w in named.items() if n not in kinds)
    assert not bad, f"tables the docs name that the workflow does not write ({sorted(kinds)}):\n" + "\n".join(bad)


# --- the configs the docs list: validated and planned as `--configfile` layers them ---

# what each config is given after (over config.yaml, which the Snakefile always reads first)
_OVER = {".test/hf-cpt.yaml": [".test/config.yaml"]}


def _listed_configs() -> list[str]:
    found = set()
    for d in NAMED:
        for m in re.finditer(r"(?<![\w/.-])((?:config|\.test)/[\w-]+\.yaml|config\.yaml)", _text(d)):
            found.add(m.group(1))
    return sorted(found)


CONFIGS = _listed_configs()


def _load(path: str) -> dict:
    with open(os.path.join(ROOT, path)) as f:
        return yaml.safe_load(f) or {}


def test_the_docs_list_the_configs():
    assert {"config.yaml", ".test/config.yaml", "config/paper.yaml"} <= set(CONFIGS)


@pytest.mark.parametrize("path", CONFIGS)
def test_listed_config_validates_and_plans(path):
    from infinite_compute.study.plan import build_plan

    assert os.path.exists(os.path.join(ROOT, path)), f"the docs list {path}, which does not exist"
    config = _load("config.yaml")
    if path != "config.yaml":
        for layer in _OVER.get(path, []) + [path]:
            update_config(config, copy.deepcopy(_load(layer)))
    validate(config, SCHEMA)  # fills in the schema's defaults, as the Snakefile's validate does
    plan = build_plan(config)
    # an import study trains nothing but still plans (rules/common.smk builds the plan for any config)
    assert plan.models, path


def test_speed_references_are_the_docs_numbers():
    """bench/speed.py's reference times and peaks (bench/speed_reference.json) are the ones its sources state."""
    import json

    with open(os.path.join(ROOT, "bench", "speed_reference.json")) as f:
        ref = json.load(f)
    perf = _text("docs/performance.md")
    default, smoke, synthetic = (ref["studies"][k] for k in ("default", "smoke", "synthetic"))
    for e in (default, synthetic):
        row = next(line for line in perf.splitlines() if f"| {e['time_min']} min |" in line)
        assert " / ".join(str(p) for p in e["peaks_gflops"]) + " GFLOP/s" in row and e["commit"] in row
    lo, hi = smoke["time_range_min"]
    assert f"| {lo}-{hi} min |" in perf and lo <= smoke["time_min"] <= hi
    assert smoke["peaks_gflops"] == []  # none measured: bench/speed.py calls its estimate rough
    for e in (default, smoke, synthetic):
        assert os.path.exists(os.path.join(ROOT, e["config"]))
        assert os.path.exists(os.path.join(ROOT, e["source"].split()[0].rstrip(",")))


def test_the_worked_example_sweep_plans_the_runs_the_page_names():
    """docs/extending.md's config-only recipe: over config.yaml it validates, and the plan trains the six
    runs the page lists, two of them runs the default study trains anyway (the same recipe, one key)."""
    from infinite_compute.study.plan import build_plan

    (block,) = worked_example("extending.md", "a config")
    config = _load("config.yaml")
    base = build_plan(validate_copy(config))
    update_config(config, yaml.safe_load(block))
    plan = build_plan(validate_copy(config))
    expected = {f"n4-d8k-ep32-lr{lr}-wd12.8-s{s}" for lr in ("0.01", "0.03", "0.1") for s in (0, 1)}
    assert set(plan.sweeps["lr-n4"]) == expected
    assert "n4-d8k-ep32-lr{0.01,0.03,0.1}-wd12.8-s{0,1}" in _text("docs/extending.md")
    # the page says the one at lr 0.03 and seed 0 is the regularized search's start for n4, trained anyway
    cell = next(c for c in base.cells.values() if c.search == "regularized" and c.model == "n4")
    assert base.point_run(cell, cell.start) == "n4-d8k-ep32-lr0.03-wd12.8-s0"
    assert set(plan.cells) == set(base.cells) and set(plan.runs) - set(base.runs) == set(plan.sweeps["lr-n4"])


def validate_copy(config: dict) -> dict:
    c = copy.deepcopy(config)
    validate(c, SCHEMA)
    return c


# --- every command README shows, and where it is run ---

# (the command as README writes it, without `.venv/bin/`) -> (a file, a text in it): a test or .ci/run
# that runs it with those arguments, or a page that reports its run with the numbers it gave
README_COMMANDS = {
    "python3.11 -m venv .venv": (".ci/run", "python3.11 -m venv .venv"),
    "pip install -c requirements.lock -e .": (".ci/run", "pip install -q --disable-pip-version-check -c requirements.lock -e ."),
    "python -m pytest -q tests": (".ci/run", ".venv/bin/python -m pytest -q tests"),
    "snakemake figures/all --cores all": ("docs/performance.md", "| the default study (`config.yaml`) | "),
    "snakemake figures/all --configfile .test/config.yaml --cores 2":
        ("tests/test_workflow.py", 'smk(wd, "figures/all", "--configfile", ".test/config.yaml", "--cores", "2")'),
    "python bench/speed.py": ("docs/performance.md", "bench/speed.py"),
    "snakemake --report report.html": ("tests/test_workflow.py", 'smk(smoke, "--report", "report.html"'),
}


def readme_commands() -> list[str]:
    """The commands in README.md: the lines of its shell blocks (```sh, ```bash or ```console) and its
    inline code that starts with `.venv/bin/`, each split at `&&` and without the `.venv/bin/`."""
    text = _text("README.md")
    blocks = re.findall(r"^```(?:sh|bash|shell|console)\n(.*?)^```", text, re.M | re.S)
    shown = [line.strip().removeprefix("$ ") for b in blocks for line in b.splitlines() if line.strip()]
    shown += [" ".join(c.split()) for c in re.findall(r"`(\.venv/bin/[^`]+)`", _FENCE.sub("", text))]
    assert not re.search(r"\n\n {4}\S", _FENCE.sub("", text)), "README has an indented code block: fence it"
    return [re.sub(r"(?<![\w/])\.venv/bin/", "", part.strip()) for line in shown for part in line.split("&&")]


def test_every_readme_command_is_run_by_a_test_or_its_run_is_reported():
    commands = readme_commands()
    # the two set-up commands and the smoke run, at least (the pattern still finds README's commands)
    assert commands.count("python3.11 -m venv .venv") >= 3 and "python -m pytest -q tests" in commands
    unknown = sorted(set(c for c in commands if c not in README_COMMANDS))
    assert not unknown, ("README shows commands that no test runs and no page reports (add them to "
                         f"README_COMMANDS with where they run): {unknown}")
    for command in set(commands):
        path, evidence = README_COMMANDS[command]
        assert evidence in _text(path), f"README's `{command}`: {path} no longer holds {evidence!r}"
    # the install and test commands are the ones CI runs (.ci/run calls README's test command)
    ci = _text(".ci/run")
    assert ".venv/bin/python -m pytest -q tests" in ci
