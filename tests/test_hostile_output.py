"""Reports are not a channel for the checkpoint's author: hostile names render inert in every text format."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from tiecheck.cli import app
from tiecheck.output._escape import markdown, terminal, visible

HOSTILE = {
    "link": "[click me](https://evil.example/phish)",
    "image": "![pixel](https://evil.example/track.png)",
    "html": "<img src=x onerror=alert(1)><details open>",
    "backticks": "a`b``c",
    "newline": "w\n::error file=setup.py::pwned",
    "ansi": "\x1b[2J\x1b[31mred\x1b]8;;https://evil.example\x07link\x1b]8;;\x07",
    "workflow": "::add-mask::secret ::stop-commands::token",
    "mention": "@octo-org/security-team www.evil.example https://evil.example/a",
    "bidi": "safe\u202egnp.exe",
    "pipe": "col|umn",
}


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """Shard 1 holds tensors the index does not list: TC004 quotes every one of their names."""
    folder = tmp_path / "ck"
    folder.mkdir()
    save_file({n: torch.ones(2) for n in [*HOSTILE.values(), "kept"]}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({"other": torch.ones(2)}, str(folder / "model-00002-of-00002.safetensors"))
    weight_map = {"kept": "model-00001-of-00002.safetensors", "other": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def render(folder: Path, fmt: str) -> str:
    result = CliRunner().invoke(app, ["scan", str(folder), "--format", fmt], env={"COLUMNS": "60"})
    assert result.exit_code == 1, result.output
    assert "TC004" in result.stdout
    return result.stdout


def test_the_names_reach_the_report(hostile: Path) -> None:
    """The test is only meaningful if the findings quote the hostile names (escaped or not)."""
    data = json.loads(render(hostile, "json"))
    messages = " ".join(f["message"] + " ".join(f["tensors"]) for f in data["reports"][0]["findings"])
    for name in HOSTILE.values():
        assert name in messages  # JSON keeps them exact: it is data, not rendered


def test_markdown_renders_them_inert(hostile: Path) -> None:
    out = render(hostile, "markdown")
    assert out.count("`") % 2 == 0
    out = re.sub(r"`[^`\n]*`", "CODE", out)  # code spans are literal text: links or HTML inside them are inert
    assert not re.search(r"(?<!\\)\[[^\]]*(?<!\\)\]\(", out)  # no [text](url): links or images
    assert not re.search(r"(?<!\\)<(?!br>)[a-z/!]", out)  # no raw HTML tag but tiecheck's own <br>
    assert not re.search(r"(?<![\\:/])https?://", out)  # no bare autolink
    assert not re.search(r"(?<!\\)@octo", out)  # no mention
    assert "\x1b" not in out and "\u202e" not in out
    for line in out.splitlines():
        assert not line.startswith("::")
        if line.startswith("|"):
            assert len(re.findall(r"(?<!\\)\|", line)) in (5, 7)  # the table keeps its columns


def test_github_annotations_cannot_inject_commands(hostile: Path) -> None:
    out = render(hostile, "github")
    lines = out.splitlines()
    assert all(re.match(r"^::(error|warning|notice) ", line) for line in lines)
    assert "\x1b" not in out and "\u202e" not in out
    assert not any(line.startswith(("::add-mask", "::stop-commands", "::error file=setup.py")) for line in lines)


def test_table_shows_control_characters_visibly(hostile: Path) -> None:
    out = render(hostile, "table")
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b[2J" in out
    for line in out.splitlines():
        assert not line.lstrip().startswith("::")  # a wrapped line cannot start a workflow command
    assert "::" not in out


def test_sarif_messages_have_no_embedded_links(hostile: Path) -> None:
    data = json.loads(render(hostile, "sarif"))
    for result in data["runs"][0]["results"]:
        text = result["message"]["text"]
        assert not re.search(r"(?<!\\)\[", text) and "\x1b" not in text


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_helpers_make_each_name_inert(name: str) -> None:
    value = HOSTILE[name]
    for escaped in (visible(value), terminal(value), markdown(value)):
        assert not re.search("[\x00-\x1f\x7f\u202e]", escaped)
    assert "::" not in terminal(value)
    assert not re.search(r"(?<!\\)[\[\]<>`|@]", markdown(value))


INVISIBLE = {
    "arabic-letter-mark": "\u061c",
    "line-separator": "\u2028",
    "paragraph-separator": "\u2029",
    "mongolian-vowel-separator": "\u180e",
    "tag-characters": "\U000e0041\U000e007f",
    "soft-hyphen": "\xad",
    "hangul-filler": "\u3164",
    "lone-surrogate": "\ud800",
    "private-use": "\ue000",
    "unassigned": "\U000e0080",
}


@pytest.mark.parametrize("name", sorted(INVISIBLE))
def test_every_invisible_or_line_breaking_character_is_escaped(name: str) -> None:
    """By Unicode category, not by a list: formatting, separators, surrogates, private use, unassigned."""
    value = f"lm_head{INVISIBLE[name]}.weight"
    for escaped in (visible(value), terminal(value), markdown(value)):
        assert escaped.isascii() and escaped.isprintable(), (name, escaped)


def test_printable_text_in_any_script_is_left_as_it_is() -> None:
    for text in ("modèle.poids", "模型.权重", "слой.вес", "😀.weight", "a b"):
        assert visible(text) == text


@pytest.mark.parametrize("drawn_by", ["plain", "rich"])
@pytest.mark.parametrize("quiet", [False, True])
def test_the_header_of_each_target_shows_a_folder_name_inert(
    hostile: Path, tmp_path: Path, drawn_by: str, quiet: bool
) -> None:
    """A scan of several targets heads each with its folder's name, which the checkpoint's author chose."""
    root = tmp_path / "repo"
    root.mkdir()
    hostile.rename(root / "a\x1b[2J\x1b[31mred::error file=x::pwned")
    env = {"COLUMNS": "60", **({"TTY_COMPATIBLE": "0"} if drawn_by == "rich" else {})}  # rich lays it out then
    args = ["scan", "-r", str(root), *(["-q"] if quiet else [])]
    out = CliRunner().invoke(app, args, env=env).stdout
    assert "TC004" in out and "\\x1b[2J" in out
    assert "\x1b" not in out and "::" not in out


#: A file or folder name that is every kind of hostile a file system allows (no '/').
HOSTILE_FILE = "[bold red]x\x1b[2J\x1b[31m::error file=setup.py::pwned\u202e[red]"


@pytest.fixture
def hostile_fix(tmp_path: Path, fixtures_dir: Path) -> Path:
    """The Gemma2 merge fixture (a duplicated head to drop) in a folder with a hostile name, its second shard
    (which the fix rewrites) renamed to a hostile name."""
    folder = tmp_path / f"ck{HOSTILE_FILE}"
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", folder)
    shard = f"{HOSTILE_FILE}.safetensors"
    (folder / "model-00002-of-00002.safetensors").rename(folder / shard)
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = {k: shard if v.startswith("model-00002") else v for k, v in data["weight_map"].items()}
    index.write_text(json.dumps(data))
    return folder


def assert_inert(out: str) -> None:
    assert "\x1b" not in out and "\u202e" not in out, out
    assert "::" not in out, out
    assert "[bold red]x" in out, "rich markup in a name is shown as it is, not applied"


@pytest.mark.parametrize("drawn_by", ["plain", "rich"])
@pytest.mark.parametrize("args", [["--dry-run"], ["--yes"]], ids=["dry-run", "applied"])
def test_the_fix_report_shows_hostile_names_inert(hostile_fix: Path, drawn_by: str, args: list[str]) -> None:
    """The plan and the outcome quote shard names and the folder, which the checkpoint's author chose."""
    env = {"COLUMNS": "70", **({"TTY_COMPATIBLE": "0"} if drawn_by == "rich" else {})}
    result = CliRunner().invoke(app, ["fix", str(hostile_fix), "--drop-duplicates", *args], env=env)
    assert result.exit_code == 0, result.output
    assert "drop-tensor" in result.stdout and "\\x1b[2J" in result.stdout
    assert_inert(result.stdout)
    if args == ["--yes"]:
        assert "Fixed" in result.stdout and "TC101" not in codes_of(hostile_fix)


def codes_of(folder: Path) -> set[str]:
    data = json.loads(CliRunner().invoke(app, ["scan", str(folder), "-f", "json"]).stdout)
    return {f["code"] for f in data["reports"][0]["findings"]}


def test_an_error_naming_a_hostile_file_is_inert(hostile_fix: Path) -> None:
    """Refusals quote the file they refuse: a shard that is a symlink is named in the error line."""
    shard = hostile_fix / f"{HOSTILE_FILE}.safetensors"
    shard.rename(hostile_fix / "real.safetensors")
    shard.symlink_to("real.safetensors")
    result = CliRunner().invoke(app, ["fix", str(hostile_fix), "--drop-duplicates", "--yes"])
    assert result.exit_code == 2
    assert "symlink" in result.stderr
    assert_inert(result.stderr)


def test_the_diff_report_shows_hostile_names_inert(hostile: Path, tmp_path: Path) -> None:
    """``diff`` lists tensors by name, and their names are the uploader's."""
    other = tmp_path / "other"
    other.mkdir()
    save_file({"kept": torch.zeros(2)}, str(other / "model.safetensors"))
    result = CliRunner().invoke(app, ["diff", str(other), str(hostile)], env={"TTY_COMPATIBLE": "0"})
    assert result.exit_code == 1, result.output
    assert "\\x1b[2J" in result.stdout
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
    assert not any(line.lstrip().startswith("::") for line in result.stdout.splitlines())


def test_the_progress_bar_shows_a_hostile_tensor_name_inert() -> None:
    """The bar names the tensor it compares; a name that is rich markup neither styles nor breaks it."""
    import io

    from rich.console import Console

    from tiecheck.cli.progress import RichProgress

    buffer = io.StringIO()
    bar = RichProgress(Console(file=buffer, force_terminal=True, width=100))
    bar.begin("comparing [/unopened]\x1b[2J::error::x", 10)
    bar.advance(5)
    bar.end()
    out = _STYLES.sub("", buffer.getvalue())
    assert "[/unopened]" in out and "\\x1b[2J" in out and "::error" not in out


#: rich's own colour and cursor codes, which the bar draws with.
_STYLES = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
