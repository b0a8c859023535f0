"""Tacotron2's subcommands of ``python -m tuner_callbacks.registry``: ``export`` and ``compare``.

The registry is generic and does not import this package; it finds these through the entry point group
``tuner_callbacks.registry_commands`` (``pyproject.toml``). Both load a version's checkpoint into a
:class:`~tacotron2_lightning.module.Tacotron2Module`, which is why they live here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from tacotron2_lightning.app.export import FORMATS
from tacotron2_lightning.checkpoint import CheckpointError
from tuner_callbacks.cli_args import positive_int
from tuner_callbacks.registry.commands import RegistryCommand


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="NAME@ALIAS or NAME/VERSION (models:/ prefix allowed)")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="export_format")
    parser.add_argument("--out", required=True, type=Path)


def _export(registry: Any, args: argparse.Namespace) -> None:
    from tacotron2_lightning.app.export import export_checkpoint

    version = registry.resolve(args.reference)
    with tempfile.TemporaryDirectory(prefix="registry-export-") as folder:
        checkpoint = registry.download(version, folder, include_data_config=False)
        out = export_checkpoint(checkpoint, args.export_format, args.out)
    print(f"Exported {version.name}/{version.version} ({args.reference}) as {args.export_format} to {out}")


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="NAME@ALIAS or NAME/VERSION")
    parser.add_argument("b", help="NAME@ALIAS or NAME/VERSION")
    parser.add_argument("--data-config", type=Path, default=None,
                        help="a run's .hydra/config.yaml or a data config (default: A's stored data.yaml)")
    parser.add_argument("--max-utterances", type=positive_int, default=None, help="cap on validation utterances")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the prenet's dropout and the test")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _compare(registry: Any, args: argparse.Namespace) -> None:
    from tacotron2_lightning.app.compare import compare_versions

    comparison = compare_versions(registry, args.a, args.b, args.data_config, args.max_utterances, args.alpha,
                                  args.seed)
    print(json.dumps(comparison.to_dict(), indent=2) if args.json else
          f"{comparison.table()}\n\nVerdict: {comparison.verdict}")


EXPORT = RegistryCommand("export", "write a version as an NVIDIA, Lightning or TorchScript file", _export_arguments,
                         _export, bad_input=(CheckpointError,))
COMPARE = RegistryCommand("compare", "paired per-utterance comparison of two versions", _compare_arguments, _compare,
                          bad_input=(CheckpointError,))
