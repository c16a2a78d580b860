# The study's tables from W&B runs (config `import`): offline run folders, or a project on a W&B
# server. The fits, figures, scorecard and paper are then drawn from them by the usual rules.
if IMPORTED:

    localrules:
        import_runs,

    rule import_runs:
        """Every run of the source read (through the cache: a re-import reads only what changed), placed in
        the study's schema by its name and config, and the runs, tuning, ensembles, distillation and benchmarks
        tables written; results/import/report.json lists each run placed, or why it is not."""
        input:
            # offline: the run files found when the DAG is built (a new or grown run re-imports); a server's
            # runs are not files: rerun with `--forcerun import_runs` to fetch what changed
            runs=offline_run_files(config["import"]["offline_dirs"]) if config["import"]["source"] == "offline" else [],
        output:
            tables=[fill(paths.TABLE, kind=k) for k in ("runs", "ensembles", "distillation", "benchmarks", "tuning")],
            report=paths.IMPORT_REPORT,
            manifest=paths.IMPORT_MANIFEST,
        log:
            "logs/import/import.log",
        conda:
            "../envs/study.yaml"
        params:
            cache=paths.IMPORT_CACHE,
            # a function: eval_key's "{data}" is not a wildcard
            settings=lambda wc: json.dumps(
                {
                    **config["import"],
                    "baseline_weight_decay": config["training"]["baseline_weight_decay"],
                    "config_hash": PLAN.config_hash,
                },
                sort_keys=True,
            ),
        shell:
            "python -m infinite_compute import-runs --settings {params.settings:q} --cache {params.cache} "
            "--out {output.tables} --out-report {output.report} --out-manifest {output.manifest} > {log} 2>&1"
