"""The ``tiecheck`` command line: a thin layer over the library API.

Each command lives in its own module and registers itself on :data:`app` when imported.
"""

from tiecheck.cli import diff as _diff  # noqa: F401  (registers the command)
from tiecheck.cli import fix as _fix  # noqa: F401  (registers the command)
from tiecheck.cli import rules as _rules  # noqa: F401  (registers the commands)
from tiecheck.cli import scan as _scan  # noqa: F401  (registers the command)
from tiecheck.cli.app import app, main

__all__ = ["app", "main"]
