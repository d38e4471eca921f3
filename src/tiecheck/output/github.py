"""GitHub Actions workflow commands: one ``::error``/``::warning``/``::notice`` annotation per finding.

Paths are relative to the working directory (the workspace in Actions), so annotations land on the file.
"""

from __future__ import annotations

from tiecheck.findings import Severity
from tiecheck.output._escape import visible
from tiecheck.output.sarif import primary_files, stable_location
from tiecheck.targets import MultiReport

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(text: str) -> str:
    return visible(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(multi: MultiReport) -> str:
    lines = []
    for result in multi.results:
        folder = stable_location(result.target.folder)
        for f in result.report.findings:
            props = []
            where = ""
            if f.files and result.target.remote is not None:  # not a workspace file: named in the message
                where = f"{result.target.remote}/{primary_files(result, f)[0]}: "
            elif f.files:
                first = primary_files(result, f)[0]
                props.append(f"file={escape_property(first if folder == '.' else f'{folder}/{first}')}")
            props.append(f"title={escape_property(f.code)}")
            text = f"{where}{f.name}: {f.message}"
            lines.append(f"::{COMMANDS[f.severity]} {','.join(props)}::{escape_data(text)}")
    lines += [f"::error title=tiecheck::{escape_data(failure.message)}" for failure in multi.failures]
    return "\n".join(lines) + ("\n" if lines else "")
