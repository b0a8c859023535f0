"""Deletes all but the best versions of a registered model, with their checkpoint artifacts.

Versions rank by the monitored metric in their tags, in the mode stored with them; versions without a
metric rank last. Kept: the best ``keep``, every version holding an alias, and always at least one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tuner_callbacks.registry.client import TAG_ARTIFACT_PATH, Registry, RegistryError

log = logging.getLogger(__name__)


@dataclass
class CleanupPlan:
    """What :func:`plan_cleanup` keeps and deletes, best first; ``reasons`` says why each kept one stays."""

    name: str
    keep: list[Any] = field(default_factory=list)
    delete: list[Any] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)


def plan_cleanup(registry: Registry, name: str, keep: int) -> CleanupPlan:
    """Decides, without changing anything, which versions of ``name`` would go."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise RegistryError(f"--keep must be an integer >= 1 (the best version always stays), got {keep!r}")
    aliased: dict[int, list[str]] = {}
    for alias, number in registry.aliases(name).items():
        aliased.setdefault(number, []).append(alias)
    plan = CleanupPlan(name)
    for rank, version in enumerate(registry.versions(name)):
        number = int(version.version)
        if rank < keep:
            plan.keep.append(version)
            plan.reasons[number] = f"best {rank + 1} of {keep}"
        elif number in aliased:
            plan.keep.append(version)
            plan.reasons[number] = "alias " + ", ".join(sorted(aliased[number]))
        else:
            plan.delete.append(version)
    return plan


def apply_cleanup(registry: Registry, plan: CleanupPlan) -> list[str]:
    """Deletes the plan's versions and their artifact folders; returns one line per deletion."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    aliased = set(registry.aliases(plan.name).values())
    done = []
    for version in plan.delete:
        number = int(version.version)
        if number in aliased:  # an alias moved since the plan was made: never delete an aliased version
            log.warning("Version %s of %s gained an alias; keeping it", number, plan.name)
            continue
        registry.client.delete_model_version(plan.name, str(number))
        artifact_path, run_uri = version.tags.get(TAG_ARTIFACT_PATH), None
        if artifact_path and version.run_id:
            run_uri = registry.run_artifact_uri(version.run_id)
        if run_uri is None:
            log.warning("Version %s of %s: no artifact folder recorded or its run is gone; deleted the version only",
                        number, plan.name)
            done.append(f"deleted {plan.name}/{number} (artifacts not found)")
            continue
        get_artifact_repository(run_uri).delete_artifacts(artifact_path)
        done.append(f"deleted {plan.name}/{number} and {artifact_path}")
    return done
