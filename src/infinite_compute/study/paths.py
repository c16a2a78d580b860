"""Where every output of the study lives: the path templates the rules declare (rules/*.smk) and the
few places a command or a test must name. A folder renamed here is renamed everywhere.

Templates take Snakemake's wildcards ({run}, {name}, {cell}, {round}, {budget}, {kind}, {figure}).
"""

from __future__ import annotations

RESULTS = "results"
DATA = f"{RESULTS}/data"
CHECKPOINTS = f"{RESULTS}/checkpoints"  # resumable training state, outside every declared output
LOGS = "logs"

# the corpus, its tokens, the benchmark's items and requests
CORPUS = f"{DATA}/corpus"
CORPUS_TRAIN = f"{CORPUS}/train.jsonl"
CORPUS_VALIDATION = f"{CORPUS}/validation.jsonl"
CORPUS_MANIFEST = f"{CORPUS}/manifest.json"
TOKENIZER = f"{DATA}/tokenizer"
# token streams: directories of tokens.npy and offsets.npy, memory-mapped (data/tokens.py)
TOKENS_TRAIN = f"{DATA}/tokens/train"
TOKENS_VALIDATION = f"{DATA}/tokens/validation"
CACHE = f"{DATA}/cache/{{name}}"  # a levanter cache: d<budget>, distill-<name>, math-d<budget>
BUDGET_CACHE = f"{DATA}/cache/d{{budget}}"
DISTILL_CACHE = f"{DATA}/cache/distill-{{name}}"
MATH_CACHE = f"{DATA}/cache/math-d{{budget}}"
CACHE_INFO = "info.json"  # in every cache folder: what it holds
BENCHMARK_ITEMS = f"{DATA}/benchmark.jsonl"
LM_EVAL_TASKS = f"{DATA}/lm_eval_tasks"
BENCHMARK_REQUESTS = f"{DATA}/benchmark_requests.json"

# the math domain of the CPT stage
MATH = f"{DATA}/math"
MATH_TRAIN = f"{MATH}/corpus/train.jsonl"
MATH_VALIDATION = f"{MATH}/corpus/validation.jsonl"
MATH_HELD_OUT = f"{MATH}/corpus/held_out.jsonl"
MATH_INFO = f"{MATH}/corpus/info.json"
MATH_TOKENS_TRAIN = f"{MATH}/tokens/train"  # token streams, as TOKENS_TRAIN
MATH_TOKENS_VALIDATION = f"{MATH}/tokens/validation"
MATH_CHOICE_ITEMS = f"{MATH}/benchmark.jsonl"  # cpt.tasks' local items (heldout_math_choice)
CPT_REQUESTS = f"{MATH}/benchmark_requests.json"  # what lm-eval asks of each CPT model on cpt.tasks

# a trained model (docs/internals.md: spec.json, the HF export, metrics.json, nothing else) and its evaluation
MODEL = f"{RESULTS}/models/{{run}}"
MODEL_SPEC = f"{MODEL}/spec.json"
MODEL_HF = f"{MODEL}/hf"
MODEL_METRICS = f"{MODEL}/metrics.json"
EVAL = f"{RESULTS}/evals/{{run}}/eval.json"
LOGPROBS = f"{RESULTS}/evals/{{run}}/logprobs.npz"

# searches, ensembles, teachers' samples
PLAN = f"{RESULTS}/plan.json"
TUNING_ROUND = f"{RESULTS}/tuning/{{cell}}/round{{round}}.json"
TUNING_FINAL = f"{RESULTS}/tuning/{{cell}}/final.json"
ENSEMBLE = f"{RESULTS}/ensembles/{{name}}.json"
SAMPLES = f"{RESULTS}/samples/{{name}}.npz"

# the CPT stage's models, evaluations and records
CPT_MODEL = f"{RESULTS}/cpt/models/{{run}}"
CPT_MODEL_SPEC = f"{CPT_MODEL}/spec.json"
CPT_MODEL_HF = f"{CPT_MODEL}/hf"
CPT_MODEL_METRICS = f"{CPT_MODEL}/metrics.json"
CPT_EVAL = f"{RESULTS}/cpt/evals/{{run}}/eval.json"
CPT_LOGPROBS = f"{RESULTS}/cpt/evals/{{run}}/logprobs.npz"
CPT_SELECTED = f"{RESULTS}/cpt/selected.json"
CPT_ENSEMBLE = f"{RESULTS}/cpt/ensemble.json"

# runs logged to W&B (offline: `wandb sync` uploads them), and the tables imported from W&B runs
WANDB = f"{RESULTS}/wandb"  # WANDB_DIR of every logging run: its `wandb/offline-run-*` folders
IMPORT = f"{RESULTS}/import"
IMPORT_CACHE = f"{IMPORT}/cache"  # one record per run and the key it was read at: a re-import reads what changed
IMPORT_REPORT = f"{IMPORT}/report.json"  # every run imported: placed (its role) or not (why)
IMPORT_MANIFEST = f"{IMPORT}/manifest.json"  # what the tables were imported from (the paper's Setup)

# the Parquet tables, fits, figures and paper
TABLE = f"{RESULTS}/{{kind}}.parquet"
FITS_JSON = f"{RESULTS}/fits.json"
FIGURE = "figures/{figure}.png"
FIGURES_INDEX = "figures/all"
PAPER_TEMPLATE = "paper/paper.md.j2"
PAPER = "paper/paper.md"
PAPER_HTML_TEMPLATE = "paper/paper.html.j2"
PAPER_HTML = "paper/paper.html"  # the standalone page: the paper with its figures embedded
WORKERS_LOG = f"{LOGS}/workers.log"
WORKERS = f"{RESULTS}/workers"  # the warm-worker pools' sockets


def fill(template: str, **wildcards) -> str:
    """A template with its wildcards filled in."""
    return template.format(**wildcards)
