"""`tiecheck fix` at a real terminal (a pseudo-terminal): the prompt, its answers, Ctrl-C, the progress bar."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from fixhelpers import (
    codes,
    snapshot,
    use_merged,  # noqa: F401 - the "merged" fixture
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")


class Terminal:
    """``python -m tiecheck ARGS`` with stdin, stdout and stderr on one pseudo-terminal."""

    def __init__(self, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.environ["COLUMNS"] = "100"
            os.execv(sys.executable, [sys.executable, "-m", "tiecheck", *args])
        self.output = b""

    def read_until(self, text: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, self.output.decode(errors="replace")
            if select.select([self.fd], [], [], 0.5)[0]:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:
                    break

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def exit_code(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while True:
            with_output = select.select([self.fd], [], [], 0.2)[0]
            if with_output:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.fd, 65536)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError(self.output.decode(errors="replace"))


def test_declining_the_prompt_exits_1_and_changes_nothing(merged: Path) -> None:
    before = snapshot(merged)
    term = Terminal("fix", "--drop-duplicates", str(merged))
    term.read_until(b"[y/N]")
    assert b"drop-tensor" in term.output, "the plan is shown before the question"
    term.write(b"n\r")
    assert term.exit_code() == 1
    assert b"nothing was changed" in term.output
    assert snapshot(merged) == before


def test_ctrl_c_at_the_prompt_exits_130_and_changes_nothing(merged: Path) -> None:
    before = snapshot(merged)
    term = Terminal("fix", "--drop-duplicates", str(merged))
    term.read_until(b"[y/N]")
    term.write(b"\x03")  # the terminal sends SIGINT to the foreground process
    assert term.exit_code() == 130
    assert snapshot(merged) == before


def test_accepting_applies_and_shows_progress(merged: Path) -> None:
    term = Terminal("fix", "--drop-duplicates", str(merged))
    term.read_until(b"[y/N]")
    term.write(b"y\r")
    assert term.exit_code() == 0, term.output.decode(errors="replace")
    assert b"Fixed" in term.output
    assert codes(merged) == set()


def test_progress_with_yes(merged: Path) -> None:
    """With --yes there is no question, but the plan comes first and the copy and verify stages show a bar."""
    term = Terminal("fix", "--yes", "--drop-duplicates", str(merged))
    assert term.exit_code() == 0, term.output.decode(errors="replace")
    out = term.output
    assert out.index(b"drop-tensor") < out.index(b"Fixed")
    assert b"copy" in out and b"verify" in out
