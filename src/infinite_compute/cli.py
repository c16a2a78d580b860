"""Command line of the package: one subcommand per rule, file I/O only; logic lives in the modules."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import numpy as np

from . import worker
from .io import atomic_path, atomic_write_json, read_json


def _env_defaults(threads: int | None = None) -> None:
    """Offline, CPU-friendly defaults for every levanter/jax process (the user may override).
    With `threads` 1 the XLA flags below ask for single-threaded Eigen, but jax 0.7.2's CPU runtime
    still keeps ~1.95 cores busy on a large matmul. Pinning each of two concurrent jobs to its own
    core was measured too (bench/train-before.md): steps 9% faster, start-up slower, the same job
    time. So two jobs at once share the two cores, and neither is pinned."""
    if threads == 1:
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    for k, v in {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RAY_AUTH_MODE": "disabled",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "USE_TORCH": "0",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }.items():
        os.environ.setdefault(k, v)
    if "JAX_PLATFORMS" not in os.environ and not os.environ.get("IC_ACCELERATOR"):
        os.environ["JAX_PLATFORMS"] = "cpu"


# --- data -----------------------------------------------------------------------------------


def cmd_corpus(a) -> None:
    from . import data

    data.prepare_corpus({"data": json.loads(a.data), "seed": a.seed}, a.out)


def cmd_tokenizer(a) -> None:
    from . import data

    data.train_tokenizer(os.path.join(a.corpus, "train.jsonl"), a.vocab_size, a.training_chars, a.out)


def cmd_copy_tokenizer(a) -> None:
    from . import data

    print(json.dumps(data.copy_tokenizer(a.path, a.out)))


def cmd_tokenize(a) -> None:
    from . import data

    for split, limit, out in (("train", a.train_tokens, a.out_train),
                              ("validation", a.validation_tokens or None, a.out_validation)):  # 0: all of it
        stream, offsets = data.tokenize_stream(os.path.join(a.corpus, f"{split}.jsonl"), a.tokenizer, limit)
        if limit is not None and len(stream) < limit:
            raise SystemExit(
                f"config key '{'data.token_budgets' if split == 'train' else 'data.validation_tokens'}': "
                f"{limit} tokens asked, but the {split} split of the corpus has only {len(stream)}"
            )
        data.write_token_stream(out, stream, offsets)


def cmd_cache(a) -> None:
    from . import data

    data.build_budget_cache(a.train, a.validation, a.tokenizer, a.budget, a.out)


def cmd_benchmark_items(a) -> None:
    from . import benchmarks, data, lm_harness

    params = json.loads(a.params)
    docs = list(data.read_jsonl(os.path.join(a.corpus, "validation.jsonl")))
    items = benchmarks.build_items(docs, seed=a.seed, **{k: params[k] for k in benchmarks.ITEM_KEYS})
    with atomic_path(a.out) as tmp:
        with open(tmp, "w") as f:
            for it in items:
                f.write(json.dumps(it) + "\n")
    lm_harness.write_local_tasks(a.out, a.tasks_dir)


def cmd_benchmark_requests(a) -> None:
    """Every (context, continuation) pair lm-eval asks of a model on the configured tasks."""
    from . import lm_harness

    s = json.loads(a.settings)
    tasks = lm_harness.task_dict(s["tasks"], a.items, s["num_fewshot"], s["seed"])
    pairs = lm_harness.requests(tasks, s["limit"])
    atomic_write_json(a.out, {"tasks": s["tasks"], "requests": [list(p) for p in pairs]})
    print(json.dumps({"tasks": s["tasks"], "requests": len(pairs)}))


# --- models ---------------------------------------------------------------------------------


def cmd_train(a) -> None:
    from . import loop, train
    from .plan import RunSpec

    spec = RunSpec.from_dict(json.loads(a.spec))
    settings = json.loads(a.settings)
    common = dict(cache_dir=a.cache, tokenizer_dir=a.tokenizer, out_dir=a.out, checkpoint_root=a.checkpoints,
                  evals_per_run=settings["evals_per_run"], checkpoint_minutes=settings["checkpoint_minutes"],
                  wandb=settings.get("wandb"), init_from=a.init_from)
    if settings["engine"] == "loop":
        metrics = loop.train(spec, **common)
    else:
        metrics = train.train(spec, **common, trainer=settings.get("trainer"))
    print(json.dumps({k: metrics[k] for k in ("run_id", "final_eval_loss", "wall_seconds", "tokens_per_second")}))


def _spec(model_dir: str):
    from .plan import RunSpec

    return RunSpec.from_dict(read_json(os.path.join(model_dir, "spec.json")))


def _write_eval(out: str, run_id: str, validation: np.ndarray, arrays: dict, **fields) -> None:
    """An evaluation's outputs: logprobs.npz (the validation per-token log-probs and `arrays`) and
    eval.json (the validation loss and `fields`)."""
    os.makedirs(out, exist_ok=True)
    with atomic_path(os.path.join(out, "logprobs.npz")) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, validation=validation, **arrays)
    loss = float(-validation.astype(np.float64).mean())
    atomic_write_json(os.path.join(out, "eval.json"),
                      {"run_id": run_id, "loss": loss, "validation_tokens": int(validation.size), **fields})


def cmd_evaluate(a) -> None:
    from . import data, evaluate

    spec = _spec(a.model)
    seqs = data.evaluation_sequences(a.validation, spec.model.seq_len)
    pairs, bseqs, bmask = evaluate.encoded_request_file(a.requests, a.tokenizer, spec.model.seq_len)
    with evaluate.device_mesh():
        model = evaluate.load_model(os.path.join(a.model, "hf"), spec, a.tokenizer)
        val = evaluate.token_logprobs(model, seqs, a.batch_size)
        bench = evaluate.score_requests(model, bseqs, bmask, a.batch_size)
    _write_eval(a.out, spec.run_id, val, bench, benchmark_requests=len(pairs))


def cmd_ensemble(a) -> None:
    from . import ensemble

    members = [np.load(os.path.join(d, "logprobs.npz")) for d in a.evals]
    val = np.stack([m["validation"] for m in members])
    curve = ensemble.ensemble_loss_curve(val, seed=a.seed)
    for row in curve:
        row["subsets"] = [list(map(int, s)) for s in row["subsets"]]
    atomic_write_json(a.out, {"ensemble": a.name, "members": a.member_ids, "info": json.loads(a.info), "curve": curve})


def cmd_sample(a) -> None:
    from . import data, evaluate

    params = json.loads(a.params)
    tok = data.load_tokenizer(a.tokenizer)
    specs = [_spec(d) for d in a.teachers]
    seq_len = specs[0].model.seq_len
    n = -(-params["teacher_tokens"] // seq_len)
    with evaluate.device_mesh():
        models = [evaluate.load_model(os.path.join(d, "hf"), s, a.tokenizer) for d, s in zip(a.teachers, specs)]
        seqs = evaluate.sample_sequences(models, n, seq_len, tok.eos_token_id, params["temperature"], params["seed"],
                                         a.batch_size)
    offsets = np.arange(0, seqs.size + 1, seq_len)
    data.write_token_stream(a.out, seqs.reshape(-1).astype(np.int32), offsets)


def cmd_distill_cache(a) -> None:
    """Real tokens of the budget plus the synthetic corpus tiled to its share, as one levanter cache."""
    from . import data
    from .io import atomic_dir
    from .plan import synthetic_tokens

    stream, offsets = data.read_token_stream(a.train)
    syn, syn_offsets = data.read_token_stream(a.samples)
    vstream, voffsets = data.read_token_stream(a.validation)
    need = synthetic_tokens(a.budget, a.share)
    reps = -(-need // len(syn))
    syn_docs = [d for _ in range(reps) for d in data.documents_of(syn, syn_offsets, len(syn))]
    tiled = np.concatenate(syn_docs)[:need]
    tiled_offsets = np.concatenate([[0], np.cumsum([len(d) for d in syn_docs])])
    tiled_offsets = np.minimum(tiled_offsets, need)
    docs = list(data.documents_of(stream, offsets, a.budget)) + list(data.documents_of(tiled, tiled_offsets, need))
    with atomic_dir(a.out) as tmp:
        data.write_levanter_cache(os.path.join(tmp, "train"), docs, a.tokenizer)
        data.write_levanter_cache(os.path.join(tmp, "validation"), data.documents_of(vstream, voffsets, len(vstream)),
                                  a.tokenizer)
        atomic_write_json(os.path.join(tmp, "info.json"),
                          {"real_tokens": a.budget, "synthetic_tokens": int(need), "synthetic_share": a.share})


# --- continued pre-training (math) ------------------------------------------------------------


def cmd_math_corpus(a) -> None:
    from . import math_data

    print(json.dumps(math_data.write_corpus(json.loads(a.params), a.out)))


def _load_models(model_dirs, tokenizer_dir):
    from . import evaluate

    specs = [_spec(d) for d in model_dirs]
    return specs, [evaluate.load_model(os.path.join(d, "hf"), s, tokenizer_dir) for d, s in zip(model_dirs, specs)]


def cmd_cpt_evaluate(a) -> None:
    """A CPT run's held-out math loss (per-token log-probs saved) and answer accuracy."""
    from . import cpt, data, evaluate, math_data

    tok = data.load_tokenizer(a.tokenizer)
    problems = math_data.read_held_out(a.held_out)
    with evaluate.device_mesh():
        (spec,), models = _load_models([a.model], a.tokenizer)
        val = evaluate.token_logprobs(models[0], data.evaluation_sequences(a.validation, spec.model.seq_len), a.batch_size)
        acc = cpt.answer_accuracy(models, tok, problems, a.answer_tokens, a.batch_size, spec.model.seq_len)
    _write_eval(a.out, spec.run_id, val, {}, **acc)


def cmd_cpt_select(a) -> None:
    from . import cpt

    losses = {ev["run_id"]: ev["loss"] for ev in map(read_json, a.evals)}
    best = cpt.select_regularized(losses)
    atomic_write_json(a.out, {"selected": best, "losses": losses})
    print(best)


def cmd_cpt_ensemble(a) -> None:
    """The ensemble of the selected regularized CPT recipe at K = 1..members: loss from the saved
    log-probs, accuracy by greedy answers from the mixture of the first K members."""
    from . import cpt, data, ensemble, evaluate, math_data

    tok = data.load_tokenizer(a.tokenizer)
    problems = math_data.read_held_out(a.held_out)
    val = np.stack([np.load(os.path.join(d, "logprobs.npz"))["validation"] for d in a.evals])
    curve = []
    with evaluate.device_mesh():
        specs, models = _load_models(a.models, a.tokenizer)
        for k in range(1, len(models) + 1):
            acc = cpt.answer_accuracy(models[:k], tok, problems, a.answer_tokens, a.batch_size, specs[0].model.seq_len)
            curve.append({"ensemble_size": k, "loss": ensemble.ensemble_loss(val[:k]), **acc})
    atomic_write_json(a.out, {"members": [s.run_id for s in specs], "curve": curve})


def cmd_cpt_results(a) -> None:
    from . import cpt
    from .results import with_provenance, write_table

    plan = read_json(a.plan)
    c, s = plan["cpt"], json.loads(a.settings)
    specs = {r: read_json(os.path.join(a.root, "cpt", "models", r, "spec.json")) for r in c["runs"]}
    evals = {r: read_json(os.path.join(a.root, "cpt", "evals", r, "eval.json")) for r in specs}
    selected = read_json(a.selected)["selected"]
    rows = cpt.cpt_rows(c, specs, evals, selected, read_json(a.ensemble))
    fit_row, rows = cpt.efficiency(rows, n_bootstrap=s["bootstrap"], ci_level=s["ci_level"], seed=s["seed"])
    write_table("cpt", with_provenance(rows, plan["config_hash"]), a.out_table)
    write_table("fits", with_provenance([fit_row], plan["config_hash"]), a.out_fits)


# --- tuning ----------------------------------------------------------------------------------


def cmd_tune_round(a) -> None:
    from .tuning import cell_from_dict, round_record

    cell = cell_from_dict(json.loads(a.cell))
    previous = read_json(a.previous[0]) if a.previous else None
    if (previous is None) != (a.round == 0):
        raise SystemExit(f"{cell.cell_id}: round {a.round} needs exactly the record of round {a.round - 1}")
    losses = {}
    for path in a.evals:
        ev = read_json(path)
        losses[ev["run_id"]] = ev["loss"]
    record = round_record(cell, a.round, previous, losses)
    atomic_write_json(a.out, record)
    print(json.dumps({k: record[k] for k in ("cell", "round", "status", "next")}))


def cmd_tune_final(a) -> None:
    record = read_json(a.round)
    if record["status"] == "continue":
        raise SystemExit(f"{a.round}: the search of {record['cell']} has not ended")
    atomic_write_json(a.out, {**record, "rounds": record["round"] + 1})


# --- results --------------------------------------------------------------------------------


def cmd_results(a) -> None:
    from . import lm_harness
    from .results import with_provenance, write_table

    plan = read_json(a.plan)
    ch = plan["config_hash"]
    root = a.root
    runs_rows, bench_rows, ens_rows, dist_rows, tuning_rows = [], [], [], [], []
    bs = json.loads(a.benchmark_settings)
    pairs = lm_harness.read_requests(a.benchmark_requests)
    tasks = lm_harness.task_dict(bs["tasks"], a.benchmark_items, bs["num_fewshot"], bs["seed"])

    def scores(table, model_id):  # lm-eval's metrics per task, from the saved log-likelihoods
        return lm_harness.score(tasks, table, model_id, bs["limit"])

    bench_logprobs: dict[str, dict] = {}

    def bench_of(rid):  # a run's saved benchmark log-probs, read once (runs and ensembles share them)
        if rid not in bench_logprobs:
            with np.load(os.path.join(root, "evals", rid, "logprobs.npz")) as z:
                bench_logprobs[rid] = {k: z[k] for k in lm_harness.BENCH_ARRAYS}
        return bench_logprobs[rid]
    membership = plan["membership"]
    finals = [read_json(p) for p in a.tuning]
    searched: dict[str, list[str]] = {}
    for f in finals:
        for q in f["points"]:
            searched.setdefault(q["run_id"], []).append(f["cell"])
    ens_json = {name: read_json(os.path.join(root, "ensembles", f"{name}.json")) for name in sorted(plan["ensembles"])}
    membership = {r: {"sweeps": list(m["sweeps"]), "ensembles": []} for r, m in membership.items()}
    for name, e in ens_json.items():  # members of a search's ensemble are known only from its file
        for r in e["members"]:
            membership.setdefault(r, {"sweeps": [], "ensembles": []})["ensembles"].append(name)
    evals = {}
    for rid in sorted(set(plan["runs"]) | set(searched) | set(membership)):
        spec = plan["runs"].get(rid) or read_json(os.path.join(root, "models", rid, "spec.json"))
        metrics = read_json(os.path.join(root, "models", rid, "metrics.json"))
        ev = read_json(os.path.join(root, "evals", rid, "eval.json"))
        evals[rid] = ev
        mem = membership.get(rid, {"sweeps": [], "ensembles": []})
        role = ("student" if spec["teacher"] else "search" if rid in searched else "sweep" if mem["sweeps"]
                else "member" if mem["ensembles"] else "teacher")
        runs_rows.append(
            {
                "run_id": rid, "role": role, "sweeps": mem["sweeps"], "searches": searched.get(rid, []),
                "ensembles": mem["ensembles"],
                "model": spec["model"]["name"], "non_embedding_params": metrics["non_embedding_params"],
                "parameter_count": metrics["parameter_count"], "token_budget": spec["token_budget"],
                "epochs": spec["epochs"], "learning_rate": spec["learning_rate"],
                "weight_decay": spec["weight_decay"], "seed": spec["seed"], "batch_size": spec["batch_size"],
                "seq_len": spec["model"]["seq_len"], "num_train_steps": spec["num_train_steps"],
                "tokens_seen": metrics["tokens_seen"], "flops": metrics["flops"],
                "wall_seconds": metrics["wall_seconds"], "tokens_per_second": metrics["tokens_per_second"],
                "train_eval_loss": metrics["final_eval_loss"], "loss": ev["loss"],
                "diverged": bool(metrics["diverged"] or not np.isfinite(ev["loss"])), "data": spec["data"],
                "teacher": spec["teacher"], "synthetic_share": spec["synthetic_share"],
                "eval_curve": json.dumps(metrics["eval_loss"]),
            }
        )
        family = (role if role not in ("sweep", "search")
                  else "baseline" if np.isclose(spec["weight_decay"], a.baseline_wd) else "tuned-wd")
        for task, m in scores(lm_harness.run_table(pairs, bench_of(rid)), rid).items():
            bench_rows.append({"model_id": rid, "kind": "run", "family": family, "task": task, "loss": ev["loss"], **m})
    for name, e in ens_json.items():
        info = e["info"]
        for row in e["curve"]:
            k = row["ensemble_size"]
            ens_rows.append(
                {
                    "ensemble": name, "recipe": info["recipe"], "cell": info["cell"], "model": info["model"],
                    "non_embedding_params": info["non_embedding_params"], "token_budget": info["token_budget"],
                    "epochs": info["epochs"], "learning_rate": info["learning_rate"],
                    "weight_decay": info["weight_decay"], "ensemble_size": k, "member_ids": e["members"][:k],
                    "loss": row["loss_first"],
                    "loss_mean": row["loss_mean"], "loss_std": row["loss_std"], "n_subsets": row["n_subsets"],
                }
            )
            members = [bench_of(r) for r in e["members"][:k]]
            for task, m in scores(lm_harness.ensemble_table(pairs, members), f"{name}:K={k}").items():
                bench_rows.append({"model_id": f"{name}:K={k}", "kind": "ensemble", "family": "ensemble",
                                   "task": task, "loss": row["loss_first"], **m})
    selected = {f["cell"]: f["best"]["run_id"] for f in finals}
    for name, d in sorted(plan["distillations"].items()):
        if d["teacher_kind"] == "ensemble":
            e = ens_json[d["teacher_name"]]
            curve, teacher = e["curve"], e["members"]
            teacher_loss = curve[-1]["loss_first"]
            single = curve[0]["loss_mean"]  # the mean member: a single model of the same recipe
        else:  # one model: a given run, or a search cell's selected run (self-distillation)
            teacher = [selected[d["teacher_cell"]]] if d["teacher_kind"] == "search" else d["teacher_members"]
            teacher_loss = single = evals[teacher[0]]["loss"]
        student_loss = evals[d["student"]]["loss"]
        gain = single - teacher_loss
        dist_rows.append(
            {
                "distillation": name, "teacher_kind": d["teacher_kind"],
                "teacher": d["teacher_name"] if d["teacher_kind"] == "ensemble" else teacher[0],
                "teacher_size": len(teacher), "teacher_loss": teacher_loss,
                "single_model_loss": single, "student_id": d["student"], "student_loss": student_loss,
                "synthetic_share": d["synthetic_share"], "teacher_tokens": d["teacher_tokens"],
                # self-distillation has no teacher gain to keep: report nan, the figure shows losses
                "fraction_of_gain_kept": (single - student_loss) / gain if gain > 0 else float("nan"),
            }
        )
    params_of = {r["run_id"]: r["non_embedding_params"] for r in runs_rows}
    for f in finals:
        b = f["best"]
        tuning_rows.append(
            {
                "cell": f["cell"], "search": f["search"], "recipe": f["recipe"], "model": f["model"],
                "non_embedding_params": params_of[b["run_id"]], "token_budget": f["token_budget"],
                "run_id": b["run_id"], "loss": b["loss"], "learning_rate": b["learning_rate"],
                "weight_decay": b["weight_decay"], "epochs": b["epochs"], "status": f["status"],
                "certified": f["certified"], "edges": f["edges"], "on_grid": b["on_grid"], "rounds": f["rounds"],
                "n_trained": len(f["points"]), "neighbours": json.dumps(f["neighbours"]),
            }
        )
    for kind, rows in (("runs", runs_rows), ("ensembles", ens_rows), ("distillation", dist_rows),
                       ("benchmarks", bench_rows), ("tuning", tuning_rows)):
        write_table(kind, with_provenance(rows, ch), os.path.join(a.out_dir, f"{kind}.parquet"))


def cmd_fits(a) -> None:
    from .analysis import compute_fits
    from .results import read_table, with_provenance, write_table

    tuning = read_table(a.tuning)
    ens = read_table(a.ensembles)
    s = json.loads(a.settings)
    fits, eff = compute_fits(tuning, ens, data_scaling_models=s["data_scaling_models"],
                             n_bootstrap=s["bootstrap"], ci_level=s["ci_level"], seed=s["seed"])
    ch = s["config_hash"]
    write_table("fits", with_provenance(fits, ch), a.out_fits)
    write_table("efficiency", with_provenance(eff, ch), a.out_efficiency)
    atomic_write_json(a.out_json, {"fits": fits, "efficiency": eff})


def cmd_figure(a) -> None:
    from . import figures

    figures.draw(a.name, a.results, a.out, data_dir=a.data_dir, baseline_wd=a.baseline_wd)


def cmd_figures_index(a) -> None:
    import hashlib

    lines = []
    for p in sorted(a.figures):
        with open(p, "rb") as f:
            lines.append(f"{hashlib.sha256(f.read()).hexdigest()}  {p}")
    with atomic_path(a.out) as tmp:
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")


def cmd_paper(a) -> None:
    from . import paper

    paper.render(a.template, a.results, a.out, data_dir=a.data_dir, baseline_wd=a.baseline_wd)


LM_EVAL_COMMANDS = ("benchmark-requests", "results")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="infinite-compute", description=__doc__)
    p.add_argument("--threads", type=int, default=None, help="cores this job may use (Snakemake's {threads})")
    sub = p.add_subparsers(dest="cmd", required=True)

    def cmd(name, fn, *args):
        sp = sub.add_parser(name)
        for spec in args:
            flag, kw = spec if isinstance(spec, tuple) else (spec, {})
            sp.add_argument(flag, required=kw.pop("required", not kw.get("nargs") == "*"), **kw)
        sp.set_defaults(fn=fn)

    cmd("corpus", cmd_corpus, "--data", ("--seed", {"type": int}), "--out")
    cmd("tokenizer", cmd_tokenizer, "--corpus", ("--vocab-size", {"type": int}), ("--training-chars", {"type": int}), "--out")
    cmd("copy-tokenizer", cmd_copy_tokenizer, "--path", "--out")
    cmd("tokenize", cmd_tokenize, "--corpus", "--tokenizer", ("--train-tokens", {"type": int}),
        ("--validation-tokens", {"type": int}), "--out-train", "--out-validation")
    cmd("cache", cmd_cache, "--train", "--validation", "--tokenizer", ("--budget", {"type": int}), "--out")
    cmd("benchmark-items", cmd_benchmark_items, "--corpus", "--params", ("--seed", {"type": int}), "--out", "--tasks-dir")
    cmd("benchmark-requests", cmd_benchmark_requests, "--items", "--settings", "--out")
    cmd("train", cmd_train, "--spec", "--cache", "--tokenizer", "--out", "--checkpoints", "--settings",
        ("--init-from", {"required": False, "default": None}))
    cmd("math-corpus", cmd_math_corpus, "--params", "--out")
    cmd("cpt-evaluate", cmd_cpt_evaluate, "--model", "--validation", "--held-out", "--tokenizer",
        ("--answer-tokens", {"type": int}), ("--batch-size", {"type": int}), "--out")
    cmd("cpt-select", cmd_cpt_select, ("--evals", {"nargs": "+", "required": True}), "--out")
    cmd("cpt-ensemble", cmd_cpt_ensemble, ("--models", {"nargs": "+", "required": True}),
        ("--evals", {"nargs": "+", "required": True}), "--held-out", "--tokenizer",
        ("--answer-tokens", {"type": int}), ("--batch-size", {"type": int}), "--out")
    cmd("cpt-results", cmd_cpt_results, "--plan", "--root", "--selected", "--ensemble", "--settings",
        "--out-table", "--out-fits")
    cmd("evaluate", cmd_evaluate, "--model", "--validation", "--requests", "--tokenizer",
        ("--batch-size", {"type": int}), "--out")
    cmd("ensemble", cmd_ensemble, "--name", ("--evals", {"nargs": "+", "required": True}),
        ("--member-ids", {"nargs": "+", "required": True}), "--info", ("--seed", {"type": int}), "--out")
    cmd("sample", cmd_sample, ("--teachers", {"nargs": "+", "required": True}), "--tokenizer", "--params",
        ("--batch-size", {"type": int}), "--out")
    cmd("distill-cache", cmd_distill_cache, "--train", "--validation", "--samples", "--tokenizer",
        ("--budget", {"type": int}), ("--share", {"type": float}), "--out")
    cmd("tune-round", cmd_tune_round, "--cell", ("--round", {"type": int}), ("--previous", {"nargs": "*"}),
        ("--evals", {"nargs": "+", "required": True}), "--out")
    cmd("tune-final", cmd_tune_final, "--round", "--out")
    cmd("results", cmd_results, "--plan", ("--tuning", {"nargs": "*"}), "--root", ("--baseline-wd", {"type": float}),
        "--benchmark-items", "--benchmark-settings", "--benchmark-requests", "--out-dir")
    cmd("fits", cmd_fits, "--tuning", "--ensembles", "--settings", "--out-fits", "--out-efficiency", "--out-json")
    cmd("figure", cmd_figure, "--name", "--results", "--data-dir", ("--baseline-wd", {"type": float}), "--out")
    cmd("figures-index", cmd_figures_index, ("--figures", {"nargs": "+", "required": True}), "--out")
    cmd("paper", cmd_paper, "--template", "--results", "--data-dir", ("--baseline-wd", {"type": float}), "--out")
    a = p.parse_args(argv)
    if a.cmd in worker.COMMANDS and (rc := worker.forward(sys.argv[1:] if argv is None else argv)) is not None:
        sys.exit(rc)  # run by a warm worker (worker.py), when Snakemake started a pool
    if a.cmd not in LM_EVAL_COMMANDS:
        # levanter's __init__ imports its lm-eval adapter, which imports lm-eval when installed (with
        # torch: ~7 s per job, and broken under USE_TORCH=0); jobs that do not use lm-eval hide it,
        # and levanter falls back as when lm-eval is not installed
        sys.modules.setdefault("lm_eval", None)
    _env_defaults(a.threads)
    a.fn(a)


if __name__ == "__main__":
    main(sys.argv[1:])
