"""Ctrl-C: a real process, a real SIGINT, a pseudo-terminal for the progress bar.

The checkpoint is sparse files of zeros: gigabytes to read with ``--deep`` (seconds of work on any
machine) that take no disk space. Without cancellation the thread pool read every queued file to the
end after the interrupt.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FILES, FILE_BYTES = 8, 3 << 30
#: One chunk per worker is what an interrupted scan may still read: far below a second on any disk.
STOP_WITHIN = 3.0


def sparse_checkpoint(folder: Path) -> Path:
    folder.mkdir()
    numel = FILE_BYTES // 4
    weight_map = {}
    for i in range(FILES):
        header = json.dumps({f"w{i}": {"dtype": "F32", "shape": [numel], "data_offsets": [0, numel * 4]}}).encode()
        header += b" " * (-len(header) % 8)
        path = folder / f"model-{i + 1:05d}-of-{FILES:05d}.safetensors"
        weight_map[f"w{i}"] = path.name
        with open(path, "wb") as f:
            f.write(len(header).to_bytes(8, "little") + header)
            f.truncate(8 + len(header) + numel * 4)
            # One byte of data in every 8 MB: no chunk is a hole the reader may skip (a hole is hashed as
            # zeros without reading), so the scan really reads for as long as a 3 GB file takes.
            for offset in range(8 + len(header), 8 + len(header) + numel * 4, 8 << 20):
                f.seek(offset)
                f.write(b"\x01")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _read(fd: int, timeout: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:  # the child closed the terminal
        return b""


@pytest.mark.parametrize("command", ["scan", "diff"])
def test_ctrl_c_stops_within_a_chunk_clears_the_bar_and_exits_130(tmp_path: Path, command: str) -> None:
    folder = sparse_checkpoint(tmp_path / "big")
    args = ["scan", str(folder), "--deep"] if command == "scan" else ["diff", str(folder), str(folder)]
    main, child = pty.openpty()
    env = {**os.environ, "COLUMNS": "80", "LINES": "24", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiecheck", *args],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
        close_fds=True,
        # as in a terminal: a test run started in the background (`pytest &`) hands its children SIGINT ignored
        preexec_fn=_default_sigint,
    )
    os.close(child)
    output = b""
    try:
        deadline = time.monotonic() + 60
        # scan: wait for the bar (the read is under way); diff draws none: give it a moment
        started = time.monotonic()
        while time.monotonic() < deadline and (
            b"/s" not in output if command == "scan" else time.monotonic() < started + 2
        ):
            output += _read(main, 0.2)
        assert proc.poll() is None, output.decode(errors="replace")
        if command == "scan":
            assert b"/s" in output, output.decode(errors="replace")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        while proc.poll() is None and time.monotonic() < interrupted + 60:
            output += _read(main, 0.05)  # a terminal reads what it is sent: a full pty buffer would block the bar
        elapsed = time.monotonic() - interrupted
        code = proc.wait(timeout=5)
        while chunk := _read(main, 0.2):
            output += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    text = output.decode(errors="replace")
    assert code == 130, text
    assert elapsed < STOP_WITHIN, f"{elapsed:.1f} s after Ctrl-C"
    assert "Traceback" not in text
    if command == "scan":
        # rich erases a transient bar: the cursor goes back up over it and the lines are cleared after the last frame
        last_frame = text.rfind("/s")
        assert "\x1b[2K" in text[last_frame:] or "\x1b[1A" in text[last_frame:], repr(text[-400:])
