rule evaluate_model:
    """Validation loss and per-token log-probs, and the benchmark's choice log-probs, saved once."""
    input:
        model=lambda wc: model_files(wc.run),
        validation=rules.tokenize_corpus.output.validation,
        benchmark=rules.benchmark_items.output,
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
        "python -m infinite_compute --threads {threads} evaluate --model {params.model} --validation {input.validation} --benchmark {input.benchmark} "
        "--tokenizer {input.tokenizer} --batch-size {params.batch_size} --out {params.out} > {log} 2>&1"
