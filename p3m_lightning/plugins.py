"""Your own models and losses, outside this package: modules imported by name before a run.

A module listed in the ``plugins`` config key (``plugins=[my_models.tiny]``) is imported
before anything is built, so that its ``register_architecture`` call lets checkpoints of its
networks be rebuilt by ``eval.py``, ``predict.py`` and ``load_model`` (docs/adding-a-model.md).
Only the names you list are imported; a checkpoint never chooses what is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable


class PluginError(ImportError):
    """A listed plugin module cannot be imported; the message says which and why."""


def import_plugins(names: Iterable[str] | None) -> list[str]:
    """Import every module in ``names`` (dotted names on ``sys.path`` / ``PYTHONPATH``).

    Returns:
        The names imported.

    Raises:
        PluginError: naming the module and the import error.
    """
    imported = []
    for name in names or []:
        try:
            importlib.import_module(str(name))
        except ImportError as err:
            raise PluginError(
                f"plugin {name!r} cannot be imported ({err}); put its folder on PYTHONPATH"
            ) from None
        imported.append(str(name))
    return imported
