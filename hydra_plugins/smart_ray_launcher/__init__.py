"""``hydra/launcher=smart_ray``: each Hydra job a Ray task, on a local Ray cluster or an existing one."""
