"""Runtime: what every process of the study shares - atomic writes (io), the jobs' environment (env),
the warm-worker pool (worker) and the launchers of a training's processes (launch; ray_launch, on a
Ray cluster). The Python standard library and psutil only (ray_launch imports ray inside its
functions); imports nothing else of this package."""
