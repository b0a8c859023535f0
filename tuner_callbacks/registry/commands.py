"""Subcommands that other packages add to ``python -m tuner_callbacks.registry``.

The registry's own commands (list, stats, cleanup) know nothing of the models it holds. Commands that need to
load a model, such as Tacotron2's ``export`` and ``compare``, live with that model and are found through the
entry point group ``tuner_callbacks.registry_commands``, each naming a :class:`RegistryCommand`::

    [project.entry-points."tuner_callbacks.registry_commands"]
    export = "tacotron2_lightning.app.registry_commands:EXPORT"

so the registry never imports the packages that extend it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tuner_callbacks.registry_commands"


@dataclass(frozen=True)
class RegistryCommand:
    """One subcommand: its name and help, how it adds its arguments, and what it runs.

    Attributes:
        name: the subcommand (``export``).
        help: one line for ``--help``.
        add_arguments: adds the subcommand's arguments to its ``argparse`` parser.
        run: ``run(registry, args)``; prints what the user asked for.
        bad_input: exception types that mean bad input (a corrupt checkpoint, say): one line on stderr and exit
            status 2 instead of a traceback.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Any, argparse.Namespace], None]
    bad_input: tuple[type[BaseException], ...] = field(default=())


def installed_commands() -> list[RegistryCommand]:
    """The commands registered under :data:`ENTRY_POINT_GROUP` by installed packages, in name order.

    A command that fails to load is left out with a warning naming its entry point: the registry's own commands
    must keep working when an extension is broken.
    """
    commands = []
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            command = entry_point.load()
        except Exception as error:
            log.warning("Registry command %r (%s) could not be loaded: %s", entry_point.name, entry_point.value, error)
            continue
        if not isinstance(command, RegistryCommand):
            log.warning("Registry command %r (%s) is a %s, not a RegistryCommand", entry_point.name,
                        entry_point.value, type(command).__name__)
            continue
        commands.append(command)
    return commands


def unique_commands(commands: Iterable[RegistryCommand], taken: Iterable[str]) -> list[RegistryCommand]:
    """``commands`` without those whose name is taken (by the registry's own commands or an earlier one)."""
    seen, result = set(taken), []
    for command in commands:
        if command.name in seen:
            log.warning("Registry command %r is defined twice; the first one is kept", command.name)
            continue
        seen.add(command.name)
        result.append(command)
    return result
