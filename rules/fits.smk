rule fit_power_laws:
    """L = A / x^alpha + E (lmfit, stderr + bootstrap CIs) over N, K and D; data-efficiency multipliers."""
    input:
        tuning=rules.results_tables.output.tuning,
        ensembles=rules.results_tables.output.ensembles,
    output:
        fits=fill(paths.TABLE, kind="fits"),
        efficiency=fill(paths.TABLE, kind="efficiency"),
        json=paths.FITS_JSON,
    log:
        "logs/fits/fits.log",
    conda:
        "../envs/study.yaml"
    params:
        settings=json.dumps(
            {
                "data_scaling_models": config["fits"]["data_scaling_models"],
                "config_hash": PLAN.config_hash,
                "bootstrap": config["fits"]["bootstrap"],
                "ci_level": config["fits"]["ci_level"],
                "seed": config["seed"],
            },
            sort_keys=True,
        ),
    shell:
        "python -m infinite_compute fits --tuning {input.tuning} --ensembles {input.ensembles} --settings {params.settings:q} "
        "--out-fits {output.fits} --out-efficiency {output.efficiency} --out-json {output.json} > {log} 2>&1"
