rule evaluate_model:
    """Validation loss and per-token log-probs, and the per-token log-probs of every benchmark
    request, saved once (ensembles and lm-eval's metrics are computed from them)."""
    input:
        spec=lambda wc: model_spec(wc.run),
        hf=lambda wc: model_hf(wc.run),
        validation=rules.tokenize_corpus.output.validation,
        requests=rules.benchmark_requests.output,
        tokenizer=rules.train_tokenizer.output,
    output:
        eval=paths.EVAL,
        logprobs=paths.LOGPROBS,
    log:
        "logs/evaluate/{run}.log",
    benchmark:
        "benchmarks/evaluate/{run}.tsv"
    conda:
        "../envs/study.yaml"
    threads: config["resources"]["eval_threads"]
    params:
        batch_size=config["evaluation"]["batch_size"],
    shell:
        "python -m infinite_compute --threads {threads} evaluate --spec {input.spec} --hf {input.hf} "
        "--validation {input.validation} --requests {input.requests} --tokenizer {input.tokenizer} "
        "--batch-size {params.batch_size} --out-eval {output.eval} --out-logprobs {output.logprobs} > {log} 2>&1"
