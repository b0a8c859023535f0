"""``hydra/sweeper=smart_optuna``: a Hydra sweeper on current Optuna with pruning, resume and parallel trials."""
