"""``python -m tuner_callbacks.registry``: list, clean up, and (with the commands other packages add) export and
compare registered model versions.

Examples::

    python -m tuner_callbacks.registry list
    python -m tuner_callbacks.registry stats tacotron2-train
    python -m tuner_callbacks.registry export tacotron2-train@champion --format nvidia --out tacotron2_statedict.pt
    python -m tuner_callbacks.registry cleanup --keep 3 --dry-run
    python -m tuner_callbacks.registry compare tacotron2-train/1 tacotron2-train@champion --json

``list``, ``stats`` and ``cleanup`` are the registry's own; installed packages add subcommands through the entry
point group ``tuner_callbacks.registry_commands`` (see :mod:`tuner_callbacks.registry.commands`): Tacotron2's
``export`` and ``compare`` come from :mod:`tacotron2_lightning.app.registry_commands`.

The store is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///outputs/mlflow.db``. Bad input
(unknown model, version or alias; for added commands, what they declare as bad input) ends with one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from tuner_callbacks import contract
from tuner_callbacks.cli_args import positive_int
from tuner_callbacks.registry.client import (
    TAG_CHECKPOINT_BYTES,
    TAG_GLOBAL_STEP,
    TAG_MODE,
    TAG_MONITOR,
    TAG_REGISTERED_ON,
    Registry,
    RegistryError,
    monitor_value,
)
from tuner_callbacks.registry.commands import RegistryCommand, installed_commands, unique_commands

OWN_COMMANDS = ("list", "stats", "cleanup")


def build_parser(extensions: Sequence[RegistryCommand] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tuner_callbacks.registry",
                                     description="The model registry on MLflow.")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///outputs/mlflow.db)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("list", "versions with their metric, step, trial and size; * marks the best"),
                       ("stats", "per registered model: versions, sizes, metric range, aliases, best version")):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("names", nargs="*", help="registered models (default: all)")
        command.add_argument("--json", action="store_true", help="machine-readable output")
    cleanup = commands.add_parser("cleanup", help="delete all but the best K versions (aliased ones stay)")
    cleanup.add_argument("names", nargs="*", help="registered models (default: all)")
    cleanup.add_argument("--keep", required=True, type=positive_int, help="how many of the best versions stay")
    cleanup.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    for extension in extensions:
        extension.add_arguments(commands.add_parser(extension.name, help=extension.help,
                                                    description=extension.help))
    return parser


def _describe(version: Any, aliases: dict[str, int], best: bool) -> dict[str, Any]:
    number = int(version.version)
    size = version.tags.get(TAG_CHECKPOINT_BYTES)
    value = monitor_value(version)
    return {
        "name": version.name, "version": number, "best": best,
        "aliases": sorted(a for a, v in aliases.items() if v == number),
        "monitor": version.tags.get(TAG_MONITOR), "mode": version.tags.get(TAG_MODE),
        "value": None if math.isnan(value) else value,
        "step": int(version.tags[TAG_GLOBAL_STEP]) if TAG_GLOBAL_STEP in version.tags else None,
        "registered_on": version.tags.get(TAG_REGISTERED_ON), "trial": version.tags.get(contract.TAG_TRIAL),
        "study": version.tags.get(contract.TAG_STUDY), "bytes": int(size) if size else None, "run_id": version.run_id,
    }


def _rows(registry: Registry, names: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    result = {}
    for name in names or registry.model_names():
        aliases = registry.aliases(name)
        versions = registry.versions(name)  # best first
        result[name] = [_describe(v, aliases, i == 0 and not math.isnan(monitor_value(v)))
                        for i, v in enumerate(versions)]
    return result


def _megabytes(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.1f} MB"


def _list(registry: Registry, args: argparse.Namespace) -> None:
    rows = _rows(registry, args.names)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"No registered models in {registry.tracking_uri}")
    for name, versions in rows.items():
        print(f"{name}: {len(versions)} version(s)")
        print(f"  {'':1} {'version':>7} {'aliases':<14} {'metric':<12} {'value':>10} {'step':>8} {'on':<11} "
              f"{'trial':>5} {'size':>9}")
        for row in sorted(versions, key=lambda r: r["version"]):
            value = "-" if row["value"] is None else f"{row['value']:.4g}"
            print(f"  {'*' if row['best'] else '':1} {row['version']:>7} {','.join(row['aliases']) or '-':<14} "
                  f"{row['monitor'] or '-':<12} {value:>10} {row['step'] if row['step'] is not None else '-':>8} "
                  f"{row['registered_on'] or '-':<11} {row['trial'] or '-':>5} {_megabytes(row['bytes']):>9}")


def _stats(registry: Registry, args: argparse.Namespace) -> None:
    summary = {}
    for name, versions in _rows(registry, args.names).items():
        values = [r["value"] for r in versions if r["value"] is not None]
        sizes = [r["bytes"] for r in versions if r["bytes"] is not None]
        best = next((r for r in versions if r["best"]), None)
        summary[name] = {
            "versions": len(versions), "total_bytes": sum(sizes),
            "monitor": best["monitor"] if best else None, "mode": best["mode"] if best else None,
            "best_version": best["version"] if best else None, "best_value": best["value"] if best else None,
            "median_value": statistics.median(values) if values else None,
            "worst_value": (max(values) if best and best["mode"] == "min" else min(values)) if values else None,
            "trials": len({r["trial"] for r in versions if r["trial"] is not None}),
            "aliases": {a: r["version"] for r in versions for a in r["aliases"]},
        }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for name, s in summary.items():
        best = ("-" if s["best_version"] is None else
                f"version {s['best_version']} ({s['monitor']} = {s['best_value']:.4g})")
        median = "-" if s["median_value"] is None else f"{s['median_value']:.4g}"
        worst = "-" if s["worst_value"] is None else f"{s['worst_value']:.4g}"
        aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(s["aliases"].items())) or "none"
        print(f"{name}: {s['versions']} version(s), {_megabytes(s['total_bytes'])}, {s['trials']} trial(s)\n"
              f"  best: {best}; median {median}; worst {worst}\n  aliases: {aliases}")


def _cleanup(registry: Registry, args: argparse.Namespace) -> None:
    from tuner_callbacks.registry.cleanup import apply_cleanup, plan_cleanup

    for name in args.names or registry.model_names():
        plan = plan_cleanup(registry, name, args.keep)
        for version in plan.keep:
            print(f"keep   {name}/{version.version} ({plan.reasons[int(version.version)]})")
        for version in plan.delete:
            print(f"{'would delete' if args.dry_run else 'delete'} {name}/{version.version}")
        if not args.dry_run:
            for line in apply_cleanup(registry, plan):
                print(line)


def _fail(parser: argparse.ArgumentParser, error: BaseException) -> NoReturn:
    print(f"{parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None, extensions: Sequence[RegistryCommand] | None = None) -> None:
    """Runs the command line; see the module docstring. Exits with status 2 on bad input.

    ``extensions``: the added subcommands; by default those the installed packages register.
    """
    added = unique_commands(installed_commands() if extensions is None else extensions, OWN_COMMANDS)
    parser = build_parser(added)
    args = parser.parse_args(argv)
    from mlflow.exceptions import MlflowException  # after the arguments: `--help` answers without MLflow's import

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    runners = {"list": _list, "stats": _stats, "cleanup": _cleanup, **{c.name: c.run for c in added}}
    bad_input = (RegistryError, MlflowException, *(error for c in added for error in c.bad_input))
    try:
        runners[args.command](Registry(args.tracking_uri), args)
    except bad_input as error:
        _fail(parser, error)


if __name__ == "__main__":
    main()
