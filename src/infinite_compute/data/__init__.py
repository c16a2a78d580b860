"""Data: the corpus (corpus), its tokenizer (tokenizer), token streams, budgets and levanter caches
(tokens), the multiple-choice benchmark's items and lm-eval's requests (benchmarks) and the math
domain of the CPT stage (math_data). Imports study and runtime; levanter and transformers only
inside the functions that need them, so that the light jobs that import this layer do not."""
