rule evaluate_model:
    """Validation loss and per-token log-probs, and the per-token log-probs of every benchmark
    request, saved once (ensembles and lm-eval's metrics are computed from them)."""
    input:
        model=lambda wc: model_files(wc.run),
        validation=rules.tokenize_corpus.output.validation,
        requests=rules.benchmark_requests.output,
        tokenizer=rules.train_tokenizer.output,
    output:
        eval="results/evals/{run}/eval.json",
        logprobs="results/evals/{run}/logprobs.npz",
    params:
        model=lambda wc, input: parent(input.model[0]),
        out=lambda wc, output: parent(output.eval),
        batch_size=config["evaluation"]["batch_size"],
    threads: config["resources"]["eval_threads"]
    log:
        "logs/evaluate/{run}.log",
    benchmark:
        "benchmarks/evaluate/{run}.tsv"
    conda:
        "../envs/study.yaml"
    shell:
        "python -m infinite_compute --threads {threads} evaluate --model {params.model} --validation {input.validation} --requests {input.requests} "
        "--tokenizer {input.tokenizer} --batch-size {params.batch_size} --out {params.out} > {log} 2>&1"
