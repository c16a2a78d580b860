"""Study: what the study is - config loading and ConfigError (config), run and ensemble specs and
run ids (specs), the hyperparameter searches (tuning) and the config's search cells (searches), the
CPT stage's runs (cpt), the run plan (plan), the benchmark task names a config may use (tasks) and
where every output lives (paths). Pure Python; imports runtime."""
