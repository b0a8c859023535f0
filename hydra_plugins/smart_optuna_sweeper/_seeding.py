"""Where a study starts: the run's own configuration first (``enqueue_defaults``), then known-good configurations
(``enqueue_trials``), then the finished trials of an earlier study (``warm_start_from``).

Each is done once per study: a configuration a trial of the study already carries is not enqueued again, and a
study that holds trials copied from the same source is not seeded again, so running the same command again
resumes without repeating anything.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._errors import SweepError, sweeper_keys
from tuner_callbacks import contract
from tuner_callbacks import options as check
from tuner_callbacks.mlflow_utils import redact_url
from tuner_callbacks.optuna_storage import JOURNAL_PREFIX, open_storage

log = logging.getLogger(__name__)

_MISSING = object()
ENQUEUED_BY = "smart_tuner:enqueued_by"  # trial system attr: which seeding entry enqueued it


def fit_value(distribution: BaseDistribution, value: Any) -> Any:
    """``value`` as the distribution's own value (a choice as listed, an int as int), or ``_MISSING`` when it
    lies outside the distribution."""
    if value is None or isinstance(value, bool) and not isinstance(distribution, CategoricalDistribution):
        return _MISSING
    try:
        internal = distribution.to_internal_repr(value)
        if not distribution._contains(internal):
            return _MISSING
        return distribution.to_external_repr(internal)
    except (TypeError, ValueError):
        return _MISSING


def carried_by(study: optuna.Study, params: Mapping[str, Any]) -> optuna.trial.FrozenTrial | None:
    """A trial run (or waiting to run) in this study whose parameters include ``params``; copied trials aside."""
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(contract.ATTR_WARM_STARTED_FROM) is not None:
            continue
        values = {**trial.params, **trial.system_attrs.get("fixed_params", {})}
        if all(key in values and _same(values[key], value) for key, value in params.items()):
            return trial
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Real) and isinstance(b, Real) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def configured_values(config: Any, distributions: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """The run's configured value of each searched parameter that fits its distribution; warns naming the others.

    A config group's value is its chosen option (``model=choice(small, nvidia)``: the ``model`` the run composed).
    """
    from omegaconf import OmegaConf

    choices = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
    values = {}
    for key, distribution in distributions.items():
        try:
            value = choices[key] if key in choices else OmegaConf.select(config, key, default=None,
                                                                          throw_on_missing=False)
        except Exception as error:  # an interpolation that cannot be resolved before the job runs
            log.warning("enqueue_defaults: the configured %s cannot be read (%s): the sampler chooses it", key, error)
            continue
        if value is None:
            log.warning("enqueue_defaults: the config has no value at %s: the sampler chooses it", key)
            continue
        fitted = fit_value(distribution, OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
        if fitted is _MISSING:
            log.warning("enqueue_defaults: the configured %s=%r lies outside its search space %s: the sampler "
                        "chooses it", key, value, distribution)
            continue
        values[key] = fitted
    return values


def checked_trials(entries: Sequence[Any] | None, distributions: Mapping[str, BaseDistribution],
                   key: str = "hydra.sweeper.enqueue_trials") -> list[dict[str, Any]]:
    """``enqueue_trials`` as {param: value} dicts of the distributions' own values; SweepError naming the entry
    and parameter for anything else."""
    checked = []
    for index, entry in enumerate(entries or []):
        if not isinstance(entry, Mapping) or not entry:
            raise SweepError(f"{key}[{index}] must be a non-empty {{param: value}} dict, got {entry!r}")
        params = {}
        for name, value in entry.items():
            if name not in distributions:
                raise SweepError(f"{key}[{index}]: {name!r} is not a searched parameter; they are "
                                 f"{sorted(distributions)}")
            fitted = fit_value(distributions[name], value)
            if fitted is _MISSING:
                raise SweepError(f"{key}[{index}].{name}={value!r} lies outside its search space "
                                 f"{distributions[name]}")
            params[name] = fitted
        checked.append(params)
    return checked


def enqueue(study: optuna.Study, params: Mapping[str, Any], user_attrs: Mapping[str, Any], what: str) -> bool:
    """Enqueues ``params`` unless a trial already carries them; returns whether it did."""
    existing = carried_by(study, params)
    if existing is not None:
        log.info("%s: already in the study as trial %d, not enqueued again", what, existing.number)
        return False
    # Optuna's enqueue_trial, plus a mark of what enqueued it: two workers seeding a new study at once enqueue the
    # same entry twice, and the second copy is dropped when asked (_budget.refusal).
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, user_attrs=dict(user_attrs),
                                              system_attrs={"fixed_params": dict(params), ENQUEUED_BY: what}))
    log.info("%s enqueued: %s", what, dict(params))
    return True


def check_warm_start(settings: Mapping[str, Any] | None, key: str = "hydra.sweeper.warm_start_from"
                     ) -> tuple[str, str] | None:
    """``(storage, study_name)`` of ``warm_start_from``, or None; SweepError naming a bad or unknown key."""
    with sweeper_keys(prefix=""):
        settings = check.mapping(key, settings, {"storage": None, "study_name": None})
        if settings is None:
            return None
        for name in ("storage", "study_name"):
            check.text(f"{key}.{name}", settings[name])
    return settings["storage"], settings["study_name"]


def load_source(storage: str, study_name: str, directions: Sequence[str], own_study: str, own_storage: str,
                key: str = "hydra.sweeper.warm_start_from") -> optuna.Study:
    """The study to warm-start from, checked against this sweep's study (same directions, not that study itself)
    before anything is written; opens no storage file that is not there (Optuna would create it)."""
    path = _local_path(storage)
    if path is not None and not path.is_file():
        raise SweepError(f"{key}.storage={redact_url(storage)!r}: no such file {path}")
    if study_name == own_study and _normalized(storage) == _normalized(own_storage):
        raise SweepError(f"{key} names this sweep's own study {study_name!r} in {redact_url(storage)}")
    try:
        opened = open_storage(storage)
        names = optuna.study.get_all_study_names(storage=opened)
    except Exception as error:
        raise SweepError(f"{key}.storage={redact_url(storage)!r} cannot be opened: {error}") from error
    if study_name not in names:
        raise SweepError(f"{key}.study_name={study_name!r}: no such study in {redact_url(storage)} (studies there: "
                         f"{names or 'none'})")
    source = optuna.load_study(study_name=study_name, storage=opened)
    source_directions = [d.name.lower() for d in source.directions]
    if source_directions != list(directions):
        raise SweepError(f"{key}.study_name={study_name!r} has directions {source_directions}, this sweep "
                         f"{list(directions)}: its values cannot seed this study")
    return source


def _local_path(url: str) -> Path | None:
    """The file of a SQLite or journal storage URL; None for servers and in-memory databases."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX):])
    if url.startswith("sqlite:///"):
        path = url.split("?", 1)[0][len("sqlite:///"):]
        return Path(path) if path and path != ":memory:" else None
    return None


def _normalized(url: str) -> str:
    path = _local_path(url)
    return str(path.absolute().resolve()) if path is not None else url


def warm_start(study: optuna.Study, source: optuna.Study, distributions: Mapping[str, BaseDistribution],
               extra_params: bool = False) -> tuple[int, int]:
    """Copies ``source``'s COMPLETE trials whose params fit ``distributions`` into ``study`` once; returns
    (copied, skipped). ``extra_params``: a trial may hold parameters beyond the distributions (those of a custom
    search space, which cannot be checked here)."""
    mark = contract.ATTR_WARM_STARTED_FROM
    if any((t.user_attrs.get(mark) or {}).get("study") == source.study_name
           for t in study.get_trials(deepcopy=False)):
        log.info("warm_start_from: study %r was copied into %r before: not again", source.study_name,
                 study.study_name)
        return 0, 0
    copied = skipped = 0
    for trial in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        params = _fitted_params(trial, distributions, extra_params)
        if params is None:
            skipped += 1
            continue
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k != contract.ATTR_DEFAULTS}
        user_attrs[mark] = {"study": source.study_name, "trial": trial.number}
        dists = {name: distributions.get(name, trial.distributions[name]) for name in params}
        # Its constraints as Optuna keeps them (list or per name): a trial infeasible there is infeasible here.
        constraints = {key: value for key, value in trial.system_attrs.items()
                       if key == "constraints" or key.startswith("constraints:")}
        with warnings.catch_warnings():  # Optuna warns of nothing useful here (experimental arguments)
            warnings.simplefilter("ignore")
            study.add_trial(optuna.trial.create_trial(
                state=TrialState.COMPLETE, values=list(trial.values), params=params, distributions=dists,
                user_attrs=user_attrs, system_attrs=constraints, intermediate_values=dict(trial.intermediate_values)))
        copied += 1
    log.info("warm_start_from %r: %d COMPLETE trials copied into %r, %d skipped (parameters outside this search "
             "space)", source.study_name, copied, study.study_name, skipped)
    return copied, skipped


def _fitted_params(trial: optuna.trial.FrozenTrial, distributions: Mapping[str, BaseDistribution],
                   extra_params: bool) -> dict[str, Any] | None:
    names = set(trial.params)
    if not set(distributions) <= names or not extra_params and names != set(distributions):
        return None
    params = dict(trial.params)
    for name, distribution in distributions.items():
        fitted = fit_value(distribution, params[name])
        if fitted is _MISSING:
            return None
        params[name] = fitted
    return params
