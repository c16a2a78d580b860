rule write_plan:
    """The plan as data (runs, their sweep/ensemble membership, distillations) for the results."""
    output:
        paths.PLAN,
    log:
        "logs/results/plan.log",
    params:
        plan=json.dumps(plan_to_dict(PLAN), sort_keys=True),
    run:
        from infinite_compute.runtime.io import atomic_write_text

        atomic_write_text(output[0], params.plan)


rule results_tables:
    """Parquet tables (runs, ensembles, distillation, benchmarks) with provenance on every row;
    the benchmarks through lm-eval-harness, from each run's saved request log-probs."""
    input:
        plan=rules.write_plan.output,
        tuning=tuning_finals(),
        # every trained run's files, in one order (result_runs)
        specs=lambda wc: [model_spec(r) for r in result_runs()],
        metrics=lambda wc: [fill(paths.MODEL_METRICS, run=r) for r in result_runs()],
        evals=lambda wc: [fill(paths.EVAL, run=r) for r in result_runs()],
        logprobs=lambda wc: [fill(paths.LOGPROBS, run=r) for r in result_runs()],
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
        "python -m infinite_compute results --plan {input.plan} --tuning {input.tuning} --specs {input.specs} "
        "--metrics {input.metrics} --evals {input.evals} --logprobs {input.logprobs} --ensembles {input.ensembles} "
        "--baseline-wd {params.baseline_wd} --benchmark-items {input.benchmark_items} "
        "--benchmark-settings {params.benchmark:q} --benchmark-requests {input.benchmark_requests} "
        "--out {output} > {log} 2>&1"
