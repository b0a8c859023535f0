"""Config schema of the ``smart_ray`` launcher, registered in Hydra's ConfigStore.

The layout is hydra-ray-launcher's (``hydra.launcher.ray.init`` is passed to ``ray.init``, ``hydra.launcher.ray.remote``
to ``ray.remote`` for each job), so its configs port by renaming ``ray`` to ``smart_ray`` in the defaults list.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class RayConf:
    # Keyword arguments of ray.init; null ones are left out. address null starts a Ray cluster on this machine for the
    # sweep (num_cpus/num_gpus: its size, default all of the machine's); "auto", "<head>:6379" or
    # "ray://<head>:10001" joins an existing cluster, which has its own size. Any other argument with +key=value.
    init: dict[str, Any] = field(default_factory=lambda: {
        "address": None, "num_cpus": None, "num_gpus": None,
        "object_store_memory": None,  # bytes of the object store; jobs pass only configs and results through it
        "include_dashboard": False,
    })
    # Keyword arguments of ray.remote for each job: the resources one trial reserves (a Ray task starts once they are
    # free). max_retries 0: a job whose worker died (OOM killer, lost node) fails, with Ray's reason; a second run of
    # the same trial would report over its first run's values.
    remote: dict[str, Any] = field(default_factory=lambda: {"num_cpus": 1, "num_gpus": 0, "max_retries": 0})


@dataclass
class SmartRayLauncherConf:
    _target_: str = "hydra_plugins.smart_ray_launcher.smart_ray_launcher.SmartRayLauncher"
    ray: RayConf = field(default_factory=RayConf)


ConfigStore.instance().store(group="hydra/launcher", name="smart_ray", node=SmartRayLauncherConf,
                             provider="smart_tuner")
