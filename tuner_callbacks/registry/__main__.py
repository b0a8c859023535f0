"""``python -m tuner_callbacks.registry``: list, export, clean up and compare registered Tacotron2 versions.

Examples::

    python -m tuner_callbacks.registry list
    python -m tuner_callbacks.registry stats tacotron2-train
    python -m tuner_callbacks.registry export tacotron2-train@champion --format nvidia --out tacotron2_statedict.pt
    python -m tuner_callbacks.registry cleanup --keep 3 --dry-run
    python -m tuner_callbacks.registry compare tacotron2-train/1 tacotron2-train@champion --json

The store is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///outputs/mlflow.db``. Bad input
(unknown model, version or alias; a corrupt or incompatible checkpoint) ends with one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from tacotron2_lightning.cli_args import positive_int
from tuner_callbacks.registry.client import (
    TAG_CHECKPOINT_BYTES,
    TAG_GLOBAL_STEP,
    TAG_MODE,
    TAG_MONITOR,
    TAG_REGISTERED_ON,
    TAG_STUDY_NAME,
    TAG_TRIAL_NUMBER,
    Registry,
    RegistryError,
    monitor_value,
)
from tuner_callbacks.registry.export import FORMATS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tuner_callbacks.registry",
                                     description="The Tacotron2 model registry on MLflow.")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///outputs/mlflow.db)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("list", "versions with their metric, step, trial and size; * marks the best"),
                       ("stats", "per registered model: versions, sizes, metric range, aliases, best version")):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("names", nargs="*", help="registered models (default: all)")
        command.add_argument("--json", action="store_true", help="machine-readable output")
    export = commands.add_parser("export", help="write a version as an NVIDIA, Lightning or TorchScript file")
    export.add_argument("reference", help="NAME@ALIAS or NAME/VERSION (models:/ prefix allowed)")
    export.add_argument("--format", required=True, choices=FORMATS, dest="export_format")
    export.add_argument("--out", required=True, type=Path)
    cleanup = commands.add_parser("cleanup", help="delete all but the best K versions (aliased ones stay)")
    cleanup.add_argument("names", nargs="*", help="registered models (default: all)")
    cleanup.add_argument("--keep", required=True, type=positive_int, help="how many of the best versions stay")
    cleanup.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    compare = commands.add_parser("compare", help="paired per-utterance comparison of two versions")
    compare.add_argument("a", help="NAME@ALIAS or NAME/VERSION")
    compare.add_argument("b", help="NAME@ALIAS or NAME/VERSION")
    compare.add_argument("--data-config", type=Path, default=None,
                         help="a run's .hydra/config.yaml or a data config (default: A's stored data.yaml)")
    compare.add_argument("--max-utterances", type=positive_int, default=None, help="cap on validation utterances")
    compare.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    compare.add_argument("--seed", type=int, default=0, help="seeds the prenet's dropout and the test")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
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
        "registered_on": version.tags.get(TAG_REGISTERED_ON), "trial": version.tags.get(TAG_TRIAL_NUMBER),
        "study": version.tags.get(TAG_STUDY_NAME), "bytes": int(size) if size else None, "run_id": version.run_id,
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


def _export(registry: Registry, args: argparse.Namespace) -> None:
    from tuner_callbacks.registry.export import export_checkpoint

    version = registry.resolve(args.reference)
    with tempfile.TemporaryDirectory(prefix="registry-export-") as folder:
        checkpoint = registry.download(version, folder, include_data_config=False)
        out = export_checkpoint(checkpoint, args.export_format, args.out)
    print(f"Exported {version.name}/{version.version} ({args.reference}) as {args.export_format} to {out}")


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


def _compare(registry: Registry, args: argparse.Namespace) -> None:
    from tuner_callbacks.registry.compare import compare_versions

    comparison = compare_versions(registry, args.a, args.b, args.data_config, args.max_utterances, args.alpha,
                                  args.seed)
    print(json.dumps(comparison.to_dict(), indent=2) if args.json else
          f"{comparison.table()}\n\nVerdict: {comparison.verdict}")


def _fail(parser: argparse.ArgumentParser, error: BaseException) -> NoReturn:
    print(f"{parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the command line; see the module docstring. Exits with status 2 on bad input."""
    from mlflow.exceptions import MlflowException

    from tacotron2_lightning.checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    commands = {"list": _list, "stats": _stats, "export": _export, "cleanup": _cleanup, "compare": _compare}
    try:
        commands[args.command](Registry(args.tracking_uri), args)
    except (RegistryError, CheckpointError, MlflowException) as error:
        _fail(parser, error)


if __name__ == "__main__":
    main()
