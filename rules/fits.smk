rule fit_power_laws:
    """L = A / x^alpha + E (lmfit, stderr + bootstrap CIs) over N, K and D; data-efficiency multipliers."""
    input:
        runs=rules.results_tables.output.runs,
        ensembles=rules.results_tables.output.ensembles,
    output:
        fits="results/fits.parquet",
        efficiency="results/efficiency.parquet",
        json="results/fits.json",
    params:
        settings=json.dumps(
            {
                "baseline_weight_decay": config["training"]["baseline_weight_decay"],
                "bootstrap": config["fits"]["bootstrap"],
                "ci_level": config["fits"]["ci_level"],
                "seed": config["seed"],
            },
            sort_keys=True,
        ),
    log:
        "logs/fits/fits.log",
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute fits --runs {input.runs} --ensembles {input.ensembles} --settings {params.settings:q} "
        "--out-fits {output.fits} --out-efficiency {output.efficiency} --out-json {output.json} > {log} 2>&1"
