"""A Hydra app whose jobs say where they ran, for ``hydra/launcher=smart_ray`` without the training around it.

Run by tests/hydra_plugins/test_smart_ray_launcher.py as ``python ray_jobs_app.py -m hydra/launcher=smart_ray
crash=false,true ...``. Each job appends its pid to ``attempts`` in its output folder; ``crash=true`` then ends its
process at once, as the OOM killer would; otherwise it writes ``job.json``: its pid, Hydra's job id and the CPUs of the
Ray cluster it ran on.
"""

import json
import os
from pathlib import Path

import hydra
import ray
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

ConfigStore.instance().store(name="ray_jobs_app", node={"crash": False})


@hydra.main(version_base="1.3", config_path=None, config_name="ray_jobs_app")
def main(cfg: DictConfig) -> int:
    out = Path(HydraConfig.get().runtime.output_dir)
    with open(out / "attempts", "a") as attempts:
        attempts.write(f"{os.getpid()}\n")
    if cfg.crash:
        os._exit(3)
    (out / "job.json").write_text(json.dumps({"pid": os.getpid(), "job_id": HydraConfig.get().job.id,
                                              "cpus": ray.cluster_resources().get("CPU")}))
    return os.getpid()


if __name__ == "__main__":
    main()
