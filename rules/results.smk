rule write_plan:
    """The plan as data (runs, their sweep/ensemble membership, distillations) for the results."""
    output:
        paths.PLAN,
    log:
        "logs/results/plan.log",
    params:
        # in the plan's own order (the config's): a run's sweeps are listed in it (study.plan.plan_to_dict)
        plan=json.dumps(plan_to_dict(PLAN)),
    run:
        from infinite_compute.runtime.io import atomic_write_text

        atomic_write_text(output[0], params.plan)


# the tables of the runs trained here; an import (rules/import.smk) writes them from W&B runs instead
if not IMPORTED:

    localrules:
        results_tables,

    rule results_tables:
        """Parquet tables (runs, ensembles, distillation, benchmarks) with provenance on every row;
        the benchmarks through lm-eval-harness, from each run's saved request log-probs."""
        input:
            plan=rules.write_plan.output,
            tuning=tuning_finals(),
            # every trained run's files, in one order: the plan's runs (known before any training, so a dry
            # run lists them), then the searches' (known once they have ended)
            specs=run_files(paths.MODEL_SPEC, PLAN.trained_runs),
            metrics=run_files(paths.MODEL_METRICS, PLAN.trained_runs),
            evals=run_files(paths.EVAL, PLAN.trained_runs),
            logprobs=run_files(paths.LOGPROBS, PLAN.trained_runs),
            searched_specs=lambda wc: run_files(paths.MODEL_SPEC, searched_runs()),
            searched_metrics=lambda wc: run_files(paths.MODEL_METRICS, searched_runs()),
            searched_evals=lambda wc: run_files(paths.EVAL, searched_runs()),
            searched_logprobs=lambda wc: run_files(paths.LOGPROBS, searched_runs()),
            ensembles=[fill(paths.ENSEMBLE, name=n) for n in PLAN.ensembles],
            benchmark_items=rules.benchmark_items.output.questions,
            benchmark_requests=rules.benchmark_requests.output,
        output:
            runs=report(fill(paths.TABLE, kind="runs"), caption="../report/runs.rst", category="Tables"),
            ensembles=fill(paths.TABLE, kind="ensembles"),
            distillation=fill(paths.TABLE, kind="distillation"),
            benchmarks=fill(paths.TABLE, kind="benchmarks"),
            tuning=report(fill(paths.TABLE, kind="tuning"), caption="../report/tuning.rst", category="Tables"),
        log:
            "logs/results/tables.log",
        conda:
            "../envs/study.yaml"
        params:
            baseline_wd=config["training"]["baseline_weight_decay"],
            benchmark=json.dumps(BENCHMARK_SETTINGS, sort_keys=True),
        shell:
            "python -m infinite_compute results --plan {input.plan} --tuning {input.tuning} --specs {input.specs} {input.searched_specs} "
            "--metrics {input.metrics} {input.searched_metrics} --evals {input.evals} {input.searched_evals} "
            "--logprobs {input.logprobs} {input.searched_logprobs} --ensembles {input.ensembles} "
            "--baseline-wd {params.baseline_wd} --benchmark-items {input.benchmark_items} "
            "--benchmark-settings {params.benchmark:q} --benchmark-requests {input.benchmark_requests} "
            "--out {output} > {log} 2>&1"
