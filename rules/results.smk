rule write_plan:
    """The plan as data (runs, their sweep/ensemble membership, distillations) for the results."""
    output:
        "results/plan.json",
    params:
        plan=json.dumps(plan_to_dict(PLAN), sort_keys=True),
    log:
        "logs/results/plan.log",
    run:
        from infinite_compute.io import atomic_write_text

        atomic_write_text(output[0], params.plan)


rule results_tables:
    """Parquet tables (runs, ensembles, distillation, benchmarks) with provenance on every row;
    the benchmarks through lm-eval-harness, from each run's saved request log-probs."""
    input:
        plan=rules.write_plan.output,
        tuning=tuning_finals(),
        evals=all_evals(),
        metrics=[f"results/models/{r}/metrics.json" for r in PLAN.trained_runs],
        ensembles=[f"results/ensembles/{n}.json" for n in PLAN.ensembles],
        benchmark_items=rules.benchmark_items.output.questions,
        benchmark_requests=rules.benchmark_requests.output,
    output:
        runs=report("results/runs.parquet", caption="../report/runs.rst", category="Tables"),
        ensembles="results/ensembles.parquet",
        distillation="results/distillation.parquet",
        benchmarks="results/benchmarks.parquet",
        tuning=report("results/tuning.parquet", caption="../report/tuning.rst", category="Tables"),
    params:
        baseline_wd=config["training"]["baseline_weight_decay"],
        root=lambda wc, input: parent(input.plan[0]),
        benchmark=json.dumps(BENCHMARK_SETTINGS, sort_keys=True),
    log:
        "logs/results/tables.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute results --plan {input.plan} --tuning {input.tuning} --root {params.root} --baseline-wd {params.baseline_wd} "
        "--benchmark-items {input.benchmark_items} --benchmark-settings {params.benchmark:q} "
        "--benchmark-requests {input.benchmark_requests} --out-dir {params.root} > {log} 2>&1"
