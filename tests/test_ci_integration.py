"""Several checkpoints per call, the pre-commit hook (run by pre-commit itself) and the GitHub Action."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tiecheck.cli import app
from tiecheck.targets import find_checkpoints, folders_of_files

REPO = Path(__file__).resolve().parents[1]
BAD, GOOD = "gemma2-merge-duplicated-head", "clean-llama-sharded"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["scan", *args, "--format", "github"])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def runs(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A folder of model folders, with the things a recursive scan must pass over."""
    root = tmp_path / "runs"
    shutil.copytree(fixtures_dir / GOOD, root / "a")
    shutil.copytree(fixtures_dir / BAD, root / "b" / "checkpoint-100")
    shutil.copytree(fixtures_dir / "llama-missing-head", root / ".cache" / "hidden")
    (root / "st" / "1_Pooling").mkdir(parents=True)
    (root / "st" / "1_Pooling" / "config.json").write_text("{}")  # sentence-transformers: config, no weights
    (root / "trainer").mkdir()
    (root / "trainer" / "training_args.bin").write_bytes(b"not weights")
    return root


def test_recursive_finds_checkpoint_folders(runs: Path) -> None:
    # trainer/ holds only training_args.bin: scanned for its imports (a Trainer resuming loads it), clean here
    assert find_checkpoints(runs) == [runs / "a", runs / "b" / "checkpoint-100", runs / "trainer"]
    code, out, _ = invoke(str(runs), "--recursive")
    assert code == 1  # the worst of the two
    assert out.count("::") == 2 and "title=TC101" in out
    assert f"file={runs}/b/checkpoint-100/model-0000" in out


def test_recursive_without_checkpoints_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = invoke(str(tmp_path), "--recursive")
    assert code == 2
    assert "no checkpoint folders found" in err


def test_several_paths_exit_with_the_worst(fixtures_dir: Path) -> None:
    good, bad = str(fixtures_dir / GOOD), str(fixtures_dir / BAD)
    assert invoke(good)[0] == 0
    assert invoke(good, bad)[0] == 1
    assert invoke(bad, good, "--fail-on", "error")[0] == 0
    assert invoke(good, str(fixtures_dir / "gemma-tie-mismatch"), "--fail-on", "error")[0] == 1


def test_from_files_maps_staged_files_to_checkpoint_folders(runs: Path) -> None:
    files = [
        runs / "b" / "checkpoint-100" / "model-00002-of-00002.safetensors",
        runs / "st" / "1_Pooling" / "config.json",
        runs / "b" / "checkpoint-100" / "config.json",
        runs / "a" / "model.safetensors.index.json",
    ]
    assert folders_of_files(files) == [runs / "b" / "checkpoint-100", runs / "a"]
    code, out, _ = invoke("--from-files", *map(str, files))
    assert code == 1 and out.count("title=TC101") == 1
    code, out, err = invoke("--from-files", str(runs / "st" / "1_Pooling" / "config.json"))
    assert (code, out) == (0, "")
    assert "no checkpoint folder among the given files" in err


# --- pre-commit ---------------------------------------------------------------------------------------------


def hooks() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    return loaded


def test_pre_commit_hook_definition() -> None:
    hook, hub = hooks()
    assert hook["id"] == "tiecheck"
    assert hook["language"] == "python"
    assert hook["entry"] == "tiecheck scan --from-files"
    assert hook["pass_filenames"] is True
    pattern = re.compile(hook["files"])
    for name in ("model.safetensors", "model.safetensors.index.json", "config.json", "pytorch_model.bin"):
        assert pattern.search(name), name
    for name in ("optimizer.pt", "rng_state_0.pth", "last.ckpt", "model.pkl"):  # pickles are read for imports
        assert pattern.search(name), name
    assert not pattern.search("train.py")
    # the Hub scan: by hand or in CI after a push, never on a commit (it needs the network, not the staged files)
    assert hub["id"] == "tiecheck-hub" and hub["entry"] == "tiecheck scan" and hub["stages"] == ["manual"]
    assert hub["pass_filenames"] is False and hub["always_run"] is True


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _pre_commit(repo: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(cache), "PRE_COMMIT_COLOR": "never", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def sample_repo(tmp_path: Path, fixtures_dir: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "sample"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "README.md").write_text("# models\n")
    shutil.copytree(fixtures_dir / GOOD, repo / "models" / "good")
    return repo


def _local_config(repo: Path) -> None:
    """The shipped hook as a `repo: local` hook run by this environment's tiecheck (no install, works offline)."""
    hook = hooks()[0]
    tiecheck = Path(sys.executable).parent / "tiecheck"
    assert tiecheck.exists(), tiecheck
    local = {**hook, "language": "system", "entry": f"{tiecheck}{hook['entry'].removeprefix('tiecheck')}"}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))


def test_pre_commit_runs_the_hook_and_fails_on_a_bad_checkpoint(
    sample_repo: Path, tmp_path: Path, fixtures_dir: Path
) -> None:
    _local_config(sample_repo)
    _git(sample_repo, "add", "-A")
    clean = _pre_commit(sample_repo, tmp_path / "cache")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "tiecheck (checkpoint scan)" in clean.stdout and "Passed" in clean.stdout

    _git(sample_repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "good", "--no-verify")
    shutil.copytree(fixtures_dir / BAD, sample_repo / "models" / "merged")
    _git(sample_repo, "add", "-A")
    bad = _pre_commit(sample_repo, tmp_path / "cache")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout and "TC101" in bad.stdout
    assert "models/merged" in bad.stdout and "models/good" not in bad.stdout  # only the staged checkpoint


def test_pre_commit_hub_hook_scans_the_pushed_commit(sample_repo: Path, tmp_path: Path, fixtures_dir: Path) -> None:
    from hub_server import serve

    hub_hook = next(h for h in hooks() if h["id"] == "tiecheck-hub")
    tiecheck = Path(sys.executable).parent / "tiecheck"
    local = {**hub_hook, "language": "system", "entry": f"{tiecheck}{hub_hook['entry'].removeprefix('tiecheck')}"}
    local["args"] = ["hf://org/model"]
    config = {"repos": [{"repo": "local", "hooks": [local]}]}
    (sample_repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    _git(sample_repo, "add", "-A")
    with serve() as hub:
        pushed = hub.add_folder("org/model", fixtures_dir / BAD, refs={"main": "0" * 40})  # main moved on since
        env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "NO_COLOR": "1", "HF_ENDPOINT": hub.hub_url}
        env.pop("HF_HUB_OFFLINE", None)
        run = [sys.executable, "-m", "pre_commit", "run", "tiecheck-hub", "--hook-stage", "manual"]
        plain = subprocess.run(run, cwd=sample_repo, env=env, capture_output=True, text=True, timeout=600)
        assert plain.returncode == 1 and "revision not found" in plain.stdout  # main names no commit here
        env["TIECHECK_REVISION"] = pushed.sha
        done = subprocess.run(run, cwd=sample_repo, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "TC101" in done.stdout and "Failed" in done.stdout
        resolves = [p for p in hub.hub.paths if "/resolve/" in p]
        assert resolves and all(f"/resolve/{pushed.sha}/" in p for p in resolves)
        # an ordinary commit does not run it (manual stage)
        commit = subprocess.run(
            [sys.executable, "-m", "pre_commit", "run"], cwd=sample_repo, env=env, capture_output=True, text=True
        )
        assert "tiecheck (Hub repo scan)" not in commit.stdout


@pytest.mark.skipif(
    not os.environ.get("TIECHECK_SLOW_TESTS"),
    reason="installs the hook's own virtualenv from this repo (about 25 s); set TIECHECK_SLOW_TESTS=1",
)
def test_pre_commit_installs_the_hook_from_the_repo(sample_repo: Path, tmp_path: Path, fixtures_dir: Path) -> None:
    """`language: python` as users get it: pre-commit clones this repo at a rev and pip-installs it."""
    hook_repo = tmp_path / "hook-repo"
    hook_repo.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", ".pre-commit-hooks.yaml"):
        shutil.copy(REPO / name, hook_repo / name)
    shutil.copytree(REPO / "src", hook_repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    _git(hook_repo, "init", "-q")
    _git(hook_repo, "add", "-A")
    _git(hook_repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "hook")
    rev = subprocess.run(
        ["git", "-C", str(hook_repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    config = {"repos": [{"repo": str(hook_repo), "rev": rev, "hooks": [{"id": "tiecheck"}]}]}
    (sample_repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    shutil.copytree(fixtures_dir / BAD, sample_repo / "models" / "merged")
    _git(sample_repo, "add", "-A")
    bad = _pre_commit(sample_repo, tmp_path / "cache")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "TC101" in bad.stdout


# --- GitHub Action ------------------------------------------------------------------------------------------


def test_action_is_a_composite_action_with_the_documented_inputs() -> None:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert {"path", "args", "sarif-upload"} <= set(action["inputs"])
    assert action["inputs"]["sarif-upload"]["default"] == "false"
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    assert any(s.get("uses", "").startswith("actions/setup-python@") for s in steps)
    scan = next(s for s in steps if s.get("id") == "scan")
    assert scan["run"].count("tiecheck scan ") == 1  # one scan renders every format
    assert '--output-file "sarif:$SARIF_FILE"' in scan["run"]
    assert "--relative-to ." in scan["run"]  # SARIF paths relative to the repository root
    assert "${{" not in scan["run"]  # inputs reach the shell through env, never spliced into the script
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    assert "inputs.sarif-upload == 'true'" in upload["if"]
    assert steps[-1]["if"] == "${{ steps.scan.outputs.exit-code != '0' }}"
    for step in steps:
        if "run" in step:
            assert step["shell"] == "bash"  # composite run steps must name a shell


def test_readme_config_example_is_valid(tmp_path: Path) -> None:
    from tiecheck.findings import Severity
    from tiecheck.selection import load_config, resolve

    text = (REPO / "README.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "pyproject.toml").write_text(block)
    layer = load_config(tmp_path / "pyproject.toml")
    assert layer.select == ("TC0", "TC1") and layer.ignore == ("TC105",)
    settings = resolve(layer)
    assert settings.fail_on is Severity.ERROR
    assert settings.severity_for("TC104", Severity.INFO) is Severity.ERROR >= settings.fail_on


def test_readme_ci_snippets_are_valid_yaml_and_use_real_inputs() -> None:
    text = (REPO / "README.md").read_text()
    section = text.split("## Use in CI", 1)[1]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) >= 4
    docs = [yaml.safe_load(block) for block in blocks]
    inputs = set(yaml.safe_load((REPO / "action.yml").read_text())["inputs"])
    (step,) = [s for s in docs[0]["jobs"]["tiecheck"]["steps"] if s.get("uses", "").startswith("tiecheck/tiecheck@")]
    assert set(step["with"]) <= inputs
    hook_ids = {h["id"] for h in hooks()}
    (pre_commit,) = [d for d in docs if isinstance(d, dict) and "repos" in d]
    assert {h["id"] for h in pre_commit["repos"][0]["hooks"]} <= hook_ids


def _run_action_scan(tmp_path: Path, target: Path, **inputs: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The action's scan step, run by bash as the runner does, with a `tiecheck` on PATH that logs its calls."""
    tmp_path.mkdir(exist_ok=True)
    action = yaml.safe_load((REPO / "action.yml").read_text())
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "scan")
    defaults = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    values = {**defaults, "path": str(target), **inputs}
    env_map = {k: v.replace("${{ inputs.", "").replace(" }}", "") for k, v in step["env"].items()}
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    tiecheck = Path(sys.executable).parent / "tiecheck"
    (bin_dir / "tiecheck").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {tiecheck} "$@"\n')
    (bin_dir / "tiecheck").chmod(0o755)
    env = {
        **os.environ,
        **{k: values[v] for k, v in env_map.items()},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        "RUNNER_TEMP": str(tmp_path),
    }
    result = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, cwd=tmp_path, capture_output=True, text=True)
    return result, calls


def test_the_action_scans_once_and_renders_every_format(tmp_path: Path, fixtures_dir: Path) -> None:
    result, calls = _run_action_scan(tmp_path, fixtures_dir / BAD)
    assert result.returncode == 0, result.stderr
    assert len(calls.read_text().splitlines()) == 1
    assert (tmp_path / "output").read_text() == "exit-code=1\n"
    sarif = json.loads((tmp_path / "tiecheck.sarif").read_text())
    assert sarif["runs"][0]["results"][0]["ruleId"] == "TC101"
    assert "::warning file=" in result.stdout and "TC101" in (tmp_path / "summary").read_text()


def test_annotations_do_not_depend_on_the_summary(tmp_path: Path, fixtures_dir: Path) -> None:
    result, _ = _run_action_scan(tmp_path / "a", fixtures_dir / BAD, summary="false")
    assert "::warning file=" in result.stdout and not (tmp_path / "a" / "summary").exists()
    result, _ = _run_action_scan(tmp_path / "b", fixtures_dir / BAD, annotations="false")
    assert "::warning" not in result.stdout and "TC101" in (tmp_path / "b" / "summary").read_text()


def test_the_action_scans_a_hub_repo_at_the_pushed_commit(
    tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `hf upload`: the action scans hf://ORG/NAME@<sha> by range requests, the token from its input."""
    from hub_server import serve

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with serve() as hub:
        pushed = hub.add_folder("org/model", fixtures_dir / BAD, gated=True)
        hub.add_folder("org/model-main", fixtures_dir / GOOD)  # what `path` would have scanned: not read
        monkeypatch.setenv("HF_ENDPOINT", hub.hub_url)
        inputs = {"repo": "org/model", "revision": pushed.sha, "hf-token": hub.token}
        result, calls = _run_action_scan(tmp_path, fixtures_dir / GOOD, **inputs)
        assert result.returncode == 0, result.stderr
        (call,) = calls.read_text().splitlines()
        assert call.startswith(f"scan hf://org/model@{pushed.sha} --relative-to . ")
        assert (tmp_path / "output").read_text() == "exit-code=1\n"
        sarif = json.loads((tmp_path / "tiecheck.sarif").read_text())
        assert [r["ruleId"] for r in sarif["runs"][0]["results"]] == ["TC101"]
        assert "TC101" in (tmp_path / "summary").read_text()
        # the annotation names the repo's file in its text: it is not a file of the workspace
        (annotation,) = [line for line in result.stdout.splitlines() if line.startswith("::")]
        assert annotation.startswith("::warning title=TC101::")
        assert f"hf://org/model@{pushed.sha}/model-00002-of-00002.safetensors: " in annotation
        resolves = [p for p in hub.hub.paths if "/resolve/" in p]
        assert resolves and all(f"/resolve/{pushed.sha}/" in p for p in resolves)  # pinned to the pushed commit
        # (huggingface_hub itself fetches its agent registry, without a token: not a request of the scan)
        ours = [a for a, p in zip(hub.hub.authorizations, hub.hub.paths, strict=True) if "agent-harnesses" not in p]
        assert set(ours) == {f"Bearer {hub.token}"} and set(hub.cdn.authorizations) == {None}

        # Without the token the gated repo is refused: one line, exit code 2 for the last step to fail on.
        result, _ = _run_action_scan(tmp_path / "anonymous", fixtures_dir / GOOD, repo="org/model")
        assert (tmp_path / "anonymous" / "output").read_text() == "exit-code=2\n"
        assert "gated repository" in result.stderr and len(result.stderr.strip().splitlines()) == 1
