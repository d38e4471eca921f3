"""Every command of the ``tiecheck`` command line, registered on :data:`app` in ``--help`` order."""

from tiecheck.cli import diff as _diff  # noqa: F401  (registers the command)
from tiecheck.cli import fix as _fix  # noqa: F401  (registers the command)
from tiecheck.cli import rules as _rules  # noqa: F401  (registers the commands)
from tiecheck.cli import scan as _scan  # noqa: F401  (registers the command)
from tiecheck.cli.app import PlainCommand, app, main

#: The order of ``tiecheck --help``: the main job first.
_ORDER = ("scan", "fix", "diff", "rules", "explain")
app.registered_commands.sort(key=lambda c: _ORDER.index(c.name) if c.name in _ORDER else len(_ORDER))
for _command in app.registered_commands:
    _command.cls = PlainCommand  # plain placeholders in every command's help

__all__ = ["app", "main"]
