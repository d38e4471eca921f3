"""Output width: a pseudo-terminal of 80 columns, a pipe read in one, and no terminal at all.

One rule for every command: the real terminal's width when there is one, never trailing padding, and
names (tensors, rules, paths' last parts) never split mid-word.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
MERGE = "gemma2-merge-duplicated-head"
# As long as fits beside diff's status column (12) in 80 columns: at the limit, nothing may wrap.
LONG = [f"model.language_model.layers.{i}.self_attn.q_proj_with_long_name.weight" for i in range(3)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    return {**env, "TERM": "xterm-256color"}


def _pty(columns: int) -> tuple[int, int]:
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return main, child


def _drain(fd: int, proc: subprocess.Popen[bytes]) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if chunk:
                out += chunk
                continue
        if proc.poll() is not None and not ready:
            return out
        if ready and not chunk:
            return out


def in_terminal(*args: str | Path, columns: int = 80, cwd: Path | None = None) -> str:
    """stdout and stderr on an 80-column pseudo-terminal: what the user sees."""
    main, child = _pty(columns)
    command = [sys.executable, "-m", "tiecheck", *map(str, args)]
    proc = subprocess.Popen(command, stdin=child, stdout=child, stderr=child, env=_env(), cwd=cwd)
    os.close(child)
    try:
        out = _drain(main, proc)
        proc.wait(timeout=60)
    finally:
        os.close(main)
    return ANSI.sub("", out.decode()).replace("\r\n", "\n")


def piped_in_terminal(*args: str | Path, columns: int = 80, cwd: Path | None = None) -> str:
    """`tiecheck ... | less`: stdout is a pipe, the user's terminal (stderr) has 80 columns."""
    main, child = _pty(columns)
    command = [sys.executable, "-m", "tiecheck", *map(str, args)]
    try:
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=child, env=_env(), cwd=cwd, timeout=60)
    finally:
        os.close(child)
        os.close(main)
    return result.stdout.decode()


def no_terminal(*args: str | Path, cwd: Path | None = None) -> str:
    command = [sys.executable, "-m", "tiecheck", *map(str, args)]
    result = subprocess.run(command, capture_output=True, env=_env(), cwd=cwd, timeout=60, start_new_session=True)
    return result.stdout.decode()


def assert_fits(text: str, columns: int) -> None:
    assert text.strip(), "no output"
    for line in text.splitlines():
        assert line == line.rstrip(), f"trailing spaces: {line!r}"
        assert len(line) <= columns, f"{len(line)} > {columns}: {line!r}"


@pytest.fixture
def changed(tmp_path: Path) -> tuple[Path, Path]:
    """Two checkpoints whose long-named tensors differ: the diff table lists them."""
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, value in ((a, 0.0), (b, 1.0)):
        folder.mkdir()
        save_file({name: np.full((4, 4), value, dtype=np.float32) for name in LONG}, str(folder / "model.safetensors"))
    return a, b


def test_scan_in_an_80_column_terminal(fixtures_dir: Path) -> None:
    text = in_terminal("scan", MERGE, cwd=fixtures_dir)
    assert_fits(text, 80)
    report = json.loads(no_terminal("scan", MERGE, "-f", "json", cwd=fixtures_dir))["reports"][0]
    for name in (n for f in report["findings"] for n in f["tensors"][:4]):
        assert name in text, name
    assert "tie_word_embeddings  true (" in text  # as JSON spells it


@pytest.mark.parametrize("run", [piped_in_terminal, no_terminal])
def test_scan_piped(fixtures_dir: Path, run: object) -> None:
    text = run("scan", MERGE, cwd=fixtures_dir)  # type: ignore[operator]
    assert_fits(text, 80 if run is piped_in_terminal else 120)
    assert "lm_head.weight" in text and "model.embed_tokens.weight" in text


@pytest.mark.parametrize("run", [in_terminal, piped_in_terminal])
def test_diff_never_splits_a_name(changed: tuple[Path, Path], run: object) -> None:
    a, b = changed
    text = run("diff", a.name, b.name, cwd=a.parent)  # type: ignore[operator]
    assert_fits(text, 80)
    for name in LONG:
        assert name in text, text


@pytest.mark.parametrize("run", [in_terminal, piped_in_terminal, no_terminal])
def test_rules_table(run: object) -> None:
    text = run("rules")  # type: ignore[operator]
    assert_fits(text, 120 if run is no_terminal else 80)
    assert "redundant-tied-tensor" in text and "unsafe-pickle" in text


def test_help_fits_the_terminal() -> None:
    assert_fits(in_terminal("scan", "--help"), 80)
