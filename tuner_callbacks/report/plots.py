"""The Optuna plots of the sweep report, as HTML with embedded PNGs, drawn with ``optuna.visualization.matplotlib``
(no plotly needed). A plot that cannot be drawn becomes a sentence saying why: the report always builds."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuner_callbacks.report.data import objective_names
from tuner_callbacks.report.html import image, note, table

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

_DPI = 90  # small files: the report embeds a dozen figures
IMPORTANCE_SEED = 0  # fANOVA fits a random forest: a fixed seed makes the table and the plot agree


def _draw(make: Callable[[], Any], caption: str) -> str:
    """Runs one optuna matplotlib plot and returns it as an embedded image, or a note saying why not."""
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.exceptions import ExperimentalWarning

    before = set(plt.get_fignums())
    # Categorical parameters holding numbers ("8", "16") make matplotlib log a line per axis: not news here.
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # The matplotlib backend of optuna.visualization is marked experimental; the report knows.
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. identical axis limits for a one-trial study
            axes = make()
        figure = np.ravel(axes)[0].figure if isinstance(axes, np.ndarray) else axes.figure
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
        return image(buffer.getvalue(), caption)
    except Exception as error:  # the plot libraries raise ValueError, IndexError, ... on odd studies
        log.warning("Sweep report: could not draw %s: %s", caption, error)
        return note(f"{caption}: not drawn ({type(error).__name__}: {error})")
    finally:
        # optuna draws through pyplot, whose figure registry would otherwise keep every figure alive.
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def _complete(study: optuna.Study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]


def _per_objective(study: optuna.Study, plot: Callable[..., Any], what: str) -> str:
    """One plot for a single objective; one per objective (``target=``) for a multi-objective study."""
    names = objective_names(study)
    if len(names) == 1:
        return _draw(lambda: plot(study, target_name=names[0]), f"{what} of {names[0]}")
    return "".join(_draw(lambda i=i: plot(study, target=lambda t: t.values[i], target_name=names[i]),
                         f"{what} of {names[i]}") for i in range(len(names)))


def history(study: optuna.Study) -> str:
    from optuna.visualization.matplotlib import plot_optimization_history

    if not _complete(study):
        return note("No trial has completed: there is no history of objective values yet.")
    return _per_objective(study, plot_optimization_history, "Optimization history")


def importances(study: optuna.Study) -> str:
    """fANOVA importances (Optuna's default evaluator, seeded) as a table and a plot per objective."""
    import optuna
    from optuna.visualization.matplotlib import plot_param_importances

    complete = _complete(study)
    params = sorted({name for trial in complete for name in trial.params})
    if len(complete) < 2:
        return note(f"Not computed: parameter importances need at least 2 complete trials, this study has "
                    f"{len(complete)}.")
    if len(params) < 2:
        return note(f"Not computed: the study searched {len(params)} parameter(s) ({', '.join(params) or 'none'}); "
                    f"importance ranks parameters against each other and needs at least 2.")
    names = objective_names(study)
    columns: list[dict[str, float]] = []
    for i in range(len(names)):
        target = None if len(names) == 1 else (lambda t, i=i: t.values[i])
        try:
            columns.append(optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED), target=target))
        except Exception as error:  # e.g. no parameter common to all complete trials
            log.warning("Sweep report: no importances for %s: %s", names[i], error)
            return note(f"Not computed: {type(error).__name__}: {error}")
    ranked = sorted(params, key=lambda p: -columns[0].get(p, 0.0))
    rows = [[p, *(f"{column.get(p, 0.0):.3f}" for column in columns)] for p in ranked]
    body = table(["parameter", *(f"importance for {n}" for n in names)], rows, numeric=[False] + [True] * len(names))

    def plot(study: optuna.Study, **kwargs: Any) -> Any:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
        return plot_param_importances(study, evaluator=evaluator, **kwargs)

    return (body + _per_objective(study, plot, "Parameter importances")
            + note("fANOVA (Optuna's default evaluator) over the complete trials; importances sum to 1 per "
                   "objective."))


def parallel_coordinates(study: optuna.Study) -> str:
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    if not _complete(study):
        return note("No trial has completed: nothing to draw.")
    return _per_objective(study, plot_parallel_coordinate, "Parallel coordinates")


def slices(study: optuna.Study) -> str:
    from optuna.visualization.matplotlib import plot_slice

    if not _complete(study):
        return note("No trial has completed: nothing to draw.")
    return _per_objective(study, plot_slice, "Slice plot")


def pareto_front(study: optuna.Study, pareto_rows: list[list[Any]]) -> str:
    """The Pareto front (2 or 3 objectives; a table only beyond) with a table of the Pareto-optimal trials."""
    from optuna.visualization.matplotlib import plot_pareto_front

    names = objective_names(study)
    if len(names) == 1:
        return note("Not applicable: this study has a single objective, so its best trial is the front.")
    if not pareto_rows:
        return note("No trial has completed: there is no front yet.")
    body = ""
    if len(names) <= 3:
        body = _draw(lambda: plot_pareto_front(study, target_names=names), "Pareto front")
    else:
        body = note(f"{len(names)} objectives: only 2 or 3 can be drawn; the Pareto-optimal trials are listed.")
    directions = ", ".join(f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions, strict=True))
    return body + table(["trial", *names, "parameters"], pareto_rows) + note(f"Objectives: {directions}.")


def learning_curves(study: optuna.Study) -> str:
    from optuna.visualization.matplotlib import plot_intermediate_values

    if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        return note("No trial reported intermediate values (pruning off): no learning curves.")
    return _draw(lambda: plot_intermediate_values(study), "Intermediate values by step (learning curves)")
