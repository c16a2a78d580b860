"""Runtime: what every process of the study shares - atomic writes (io), the jobs' environment (env)
and the warm-worker pool (worker). The Python standard library and psutil only; imports nothing else
of this package."""
