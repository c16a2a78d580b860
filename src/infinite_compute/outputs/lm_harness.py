"""Downstream benchmarks through lm-eval-harness, for single models and ensembles.

lm-eval builds each task's requests (its prompts, few-shot examples and answer choices) and turns
log-likelihoods into its metrics (acc, acc_norm and their standard errors). The log-likelihoods
come from our own jitted scorer, in two steps, so that an ensemble's are exact and no model is run
twice:

1. `requests` (once per study): lm-eval lists every (context, continuation) pair of the tasks.
2. each run's evaluation job scores those pairs token by token (model/scoring.py) and saves the
   per-token log-probs;
3. `score` (once, in the results job): lm-eval evaluates every run and every K-member ensemble
   with a `ReplayLM` that answers from those saved log-probs. An ensemble's log-likelihood of a
   continuation sums, over its tokens, log of the mean of the members' probabilities (the
   mixture the ensemble defines), which is not a function of the members' totals.

levanter has its own adapter (levanter.eval_harness), which runs one model inside a levanter
trainer; an ensemble's mixture needs the members' per-token log-probs side by side, hence this.

The default study's task is built from held-out text (data/benchmarks.py) and declared to lm-eval by a
local task YAML; other names are lm-eval's own tasks (arc_easy, piqa, sciq in config/paper.yaml),
whose datasets lm-eval downloads from the Hugging Face hub the first time.
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
import tempfile

import numpy as np

from ..runtime.io import atomic_write_text
from ..science.ensemble import ensemble_logprobs
from ..study.tasks import LOCAL_TASKS, REPLACEMENTS, hub_datasets, lm_eval_tasks_dir

# lm_eval is imported inside the functions that use it, after prepare_env(): it must see the
# environment that function sets, and the jobs that import this module only to write the local task
# YAML (benchmark-items) need not pay for its import.

BENCH_ARRAYS = ("bench_logprobs", "bench_offsets", "bench_greedy")  # what an evaluation saves (model/scoring.py)

_LOCAL_TASK_YAML = """\
# Written by the study (infinite_compute.outputs.lm_harness): a local task over held-out text
# (data/benchmarks.py says how its items are built).
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {items}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
target_delimiter: ""
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
  - {{metric: acc_norm, aggregation: mean, higher_is_better: true}}
metadata:
  version: 1.0
"""


def prepare_env() -> None:
    """lm-eval imports transformers' torch code paths, which USE_TORCH=0 (set for levanter jobs) breaks."""
    if os.environ.get("USE_TORCH") == "0":
        del os.environ["USE_TORCH"]
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bar per model in the logs
    logging.getLogger("lm-eval").setLevel(logging.WARNING)


def write_replacement_tasks(out_dir: str) -> None:
    """The YAMLs of study.tasks.REPLACEMENTS (lm-eval's `include_path`): each includes lm-eval's own
    task YAML and changes only its name and dataset."""
    os.makedirs(out_dir, exist_ok=True)
    root = lm_eval_tasks_dir()
    for name, (task, dataset) in REPLACEMENTS.items():
        (original,) = [p for p in glob.glob(os.path.join(root, "**", f"{task}.yaml"), recursive=True)]
        atomic_write_text(os.path.join(out_dir, f"{name}.yaml"),
                          f"# Written by the study (study/tasks.py, REPLACEMENTS): lm-eval's {task} on {dataset}\n"
                          f"include: {original}\ntask: {name}\ntag: []\ndataset_path: {dataset}\n")


def fetch_hub_datasets(tasks: list[str]) -> list[str]:
    """Download the hub datasets of `tasks` into the cache `datasets` uses (HF_HOME, set by the
    caller before this import): what a job then reads offline. Returns what was fetched."""
    import datasets

    out = []
    for t, path, name in hub_datasets(tasks):
        datasets.load_dataset(path, name)
        out.append(f"{t} ({path}{', ' + name if name else ''})")
    return out


def write_local_tasks(items_path: str, out_dir: str) -> None:
    """Each local task of the items file (lm-eval's `include_path`): its items and its YAML, pointing at them."""
    by_task: dict[str, list[str]] = {}
    with open(items_path) as f:
        for line in f:
            by_task.setdefault(json.loads(line)["task"], []).append(line)
    for task, lines in by_task.items():
        items = os.path.abspath(os.path.join(out_dir, f"{task}.jsonl"))
        atomic_write_text(items, "".join(lines))
        atomic_write_text(os.path.join(out_dir, f"{task}.yaml"), _LOCAL_TASK_YAML.format(task=task, items=items))


def task_dict(tasks: list[str], items_path: str, num_fewshot: int, seed: int) -> dict:
    """lm-eval's task objects (the local tasks over `items_path`), with our few-shot count and
    few-shot seed, as simple_evaluate sets them."""
    prepare_env()
    from lm_eval.tasks import TaskManager, get_task_dict

    with tempfile.TemporaryDirectory() as include:  # the local YAMLs, pointing at this items file
        write_local_tasks(items_path, include)
        write_replacement_tasks(include)
        manager = TaskManager(include_path=include)
        missing = [t for t in tasks if t not in manager.all_tasks]
        if missing:
            raise ValueError(f"config key 'benchmark.tasks': {missing} are neither lm-eval tasks nor local ones "
                             f"{list(LOCAL_TASKS)}")
        out = get_task_dict(tasks, manager)  # loads each task's dataset
    for task in _leaf_tasks(out):
        if task.get_config("num_fewshot") != 0 or num_fewshot == 0:
            task.set_config(key="num_fewshot", value=num_fewshot)
        task.set_fewshot_seed(seed=seed)
    return out


def _leaf_tasks(d: dict):
    for v in d.values():
        if isinstance(v, dict):
            yield from _leaf_tasks(v)
        else:
            yield v


def _compile_templates_once() -> None:
    """lm-eval renders a task's prompt, target and choices with `utils.apply_template`, which compiles
    the jinja template string again for every document of every evaluation: 70% of the results job
    that scores each run and ensemble (~1 min of the default study). The same environment's compiled
    template is kept per string instead, which renders the same text."""
    import lm_eval.utils as u

    if getattr(u.apply_template, "compiles_once", False):
        return
    compiled = functools.lru_cache(maxsize=256)(u.env.from_string)

    def apply_template(template: str, doc: dict) -> str:
        return compiled(template).render(**doc)

    apply_template.compiles_once = True
    u.apply_template = apply_template


def _evaluate(lm, tasks: dict, limit: int | None) -> dict:
    from lm_eval.evaluator import evaluate

    _compile_templates_once()

    # acc and acc_norm are means: lm-eval gives their stderr in closed form, whatever bootstrap_iters
    return evaluate(lm, tasks, limit=limit, bootstrap_iters=1000, log_samples=True, verbosity="WARNING")


@functools.lru_cache(maxsize=None)
def _replay_lm_class():
    prepare_env()
    from lm_eval.api.model import LM

    class ReplayLM(LM):
        """An lm-eval model answering log-likelihood requests from a table computed beforehand:
        {(context, continuation): (log-likelihood, is_greedy)}. Generation is not supported."""

        def __init__(self, table: dict, name: str):
            super().__init__()
            self.table, self.name = table, name

        def loglikelihood(self, requests, disable_tqdm: bool = True):
            out = []
            for req in requests:
                key = tuple(req.args)
                if key not in self.table:
                    raise KeyError(f"{self.name}: no saved log-likelihood for request {key!r}; "
                                   "its evaluation predates the benchmark's requests (rerun it)")
                out.append(self.table[key])
            return out

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = True):
            raise NotImplementedError("benchmark tasks must be multiple-choice or log-likelihood tasks")

        def generate_until(self, requests, disable_tqdm: bool = True):
            raise NotImplementedError("benchmark tasks must be multiple-choice or log-likelihood tasks")

    return ReplayLM


def requests(tasks: dict, limit: int | None) -> list[tuple[str, str]]:
    """Every distinct (context, continuation) pair lm-eval asks of a model on `tasks`, in a fixed order."""
    ReplayLM = _replay_lm_class()

    class Recorder(ReplayLM):
        def loglikelihood(self, requests, disable_tqdm: bool = True):
            for req in requests:
                self.table.setdefault(tuple(req.args), (0.0, False))
            return [(0.0, False)] * len(requests)

    rec = Recorder({}, "recorder")
    _evaluate(rec, tasks, limit)
    return list(rec.table)


def score(tasks: dict, table: dict, name: str, limit: int | None) -> dict:
    """lm-eval's metrics for one model (or ensemble) whose log-likelihoods are in `table`:
    {task: {acc, acc_stderr, acc_norm, acc_norm_stderr, n_items, chance}}."""
    lm = _replay_lm_class()(table, name)
    res = _evaluate(lm, tasks, limit)
    out = {}
    for task, metrics in res["results"].items():
        samples = res["samples"].get(task, [])
        if not samples:
            continue
        n_choices = [len(s["filtered_resps"]) for s in samples]
        out[task] = {
            "acc": float(metrics["acc,none"]),
            "acc_stderr": float(metrics.get("acc_stderr,none", float("nan"))),
            "acc_norm": float(metrics.get("acc_norm,none", float("nan"))),
            "acc_norm_stderr": float(metrics.get("acc_norm_stderr,none", float("nan"))),
            "n_items": len(samples),
            "chance": float(np.mean([1.0 / max(n, 1) for n in n_choices])),
        }
    return out


# --- the per-request tables of single models and ensembles ----------------------------------


def _segment_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sums of values[offsets[i]:offsets[i+1]] (in float64; an empty segment sums to 0)."""
    c = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return c[offsets[1:]] - c[offsets[:-1]]


def run_table(pairs, logprobs: dict) -> dict:
    """{pair: (log-likelihood, is_greedy)} of one run from its saved per-token log-probs."""
    totals = _segment_sums(logprobs["bench_logprobs"], logprobs["bench_offsets"])
    return {p: (float(t), bool(g)) for p, t, g in zip(pairs, totals, logprobs["bench_greedy"])}


def ensemble_table(pairs, members: list) -> dict:
    """{pair: (log-likelihood, False)} of the mixture of `members` (saved log-probs of each):
    per token log(mean_k p_k), summed over the continuation. Whether the mixture's argmax is the
    continuation needs the full distributions, which are not saved: is_greedy is False."""

    offsets = members[0]["bench_offsets"]
    for m in members[1:]:
        if not np.array_equal(m["bench_offsets"], offsets):
            raise ValueError("ensemble members scored different benchmark requests; re-evaluate them")
    lp = ensemble_logprobs(np.stack([m["bench_logprobs"] for m in members]))
    totals = _segment_sums(lp, offsets)
    return {p: (float(t), False) for p, t in zip(pairs, totals)}


# --- a study's requests and its models' metrics from their saved log-probs ------------------


def settings_requests(settings: dict, items_path: str) -> list[tuple[str, str]]:
    """Every pair lm-eval asks of a model on settings' tasks (tasks, num_fewshot, limit, seed)."""
    if not settings["tasks"]:
        return []
    tasks = task_dict(settings["tasks"], items_path, settings["num_fewshot"], settings["seed"])
    return requests(tasks, settings["limit"])


class SavedScores:
    """lm-eval's metrics on settings' tasks of runs and of ensembles (the mixture of members), from the
    per-token log-probs each run's evaluation saved (`logprobs_path(run id)`), each file read once:
    the members of an ensemble are usually runs of their own too."""

    def __init__(self, settings: dict, pairs: list, items_path: str, logprobs_path):
        self.pairs, self.limit, self._path = pairs, settings["limit"], logprobs_path
        self.tasks = task_dict(settings["tasks"], items_path, settings["num_fewshot"], settings["seed"])
        self._saved: dict[str, dict] = {}

    def _logprobs(self, rid: str) -> dict:
        if rid not in self._saved:
            with np.load(self._path(rid)) as z:
                self._saved[rid] = {k: z[k] for k in BENCH_ARRAYS}
        return self._saved[rid]

    def run(self, rid: str) -> dict:
        return score(self.tasks, run_table(self.pairs, self._logprobs(rid)), rid, self.limit)

    def ensemble(self, name: str, members: list[str]) -> dict:
        table = ensemble_table(self.pairs, [self._logprobs(r) for r in members])
        return score(self.tasks, table, name, self.limit)
