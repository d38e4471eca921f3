"""Mutation check of the fix's safety guards: break each guard on purpose, the named tests must fail.

Run: ``python tests/mutate_fix.py [N ...]`` (from the repository root; a few minutes; N: only those). Each mutation
is applied to a copy of ``src/`` in a temporary folder, the listed tests run against that copy,
and the mutation counts as *caught* when they fail. Exit status 1 if any mutation survives.

The mutations (file: what is broken -> tests that must catch it):

verify.py
  1. the nothing-lost invariant is not called            -> dropped tensor without partner, missing tie
  2. a kept tensor's bytes are not compared with the old  -> bytes from another tensor
  3. an unreadable file's tensors are not accounted for   -> truncated shard (a rule no longer blocking)
  4. a dropped tensor's partner is not compared           -> wrong partner
  5. new findings are accepted                            -> a new finding
  6. the re-hash of written bytes is skipped              -> a corrupted copy
journal.py
  7. a replace step's source need not be its temp name    -> hostile journal: source not a temp
  8. any name is "plain" (absolute paths, ``..``)          -> hostile journal: absolute / dotdot shard names
  9. symlinks in journal steps are not refused            -> hostile journal: symlinked delete / source
apply.py / writer.py / plan.py / cli/_fix_run.py
 10. symlinked or read-only targets are not refused        -> read-only shard
 11. mode, owner and xattrs are not copied                 -> modes kept
 12. the planner's blocking findings list is empty         -> broken checkpoint refused
 13. consent is not needed without a terminal              -> no change in place without a prompt
content.py
 14. the last bytes of a compared chunk are ignored        -> --deep tie compare to the last byte
 15. the exact pair compare ignores each chunk's last byte  -> pair compare, a change at a chunk's end
_reading.py
 16. the pair compare's last, short chunk reads past the tensor -> pair compare of identical tensors
verify.py
 17. files changed since the fix first saw them are accepted -> a shard rewritten in place / swapped
apply.py
 18. a staged shard's failed fsync is not raised             -> a shard that fails to reach the disk
journal.py
 19. a replace step may put any name in place (a pickle)     -> hostile journal: replace with a pickle
 20. a delete step may delete any name (config, tokenizer)   -> hostile journal: delete the config
fixer/__init__.py
 21. a refusal after a recovery is not told the folder changed -> "nothing was changed" after a recovery
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MUTATIONS: list[tuple[str, str, str, str]] = [
    (
        "fixer/verify.py",
        "        _nothing_lost(plan, before, after, written, ties, content)\n",
        "",
        "test_fix_verify.py::test_dropped_tensor_without_partner test_fix_verify.py::test_missing_tie",
    ),
    (
        "fixer/verify.py",
        "if not _same_range(origin, old) and not content.equal(origin, old):",
        "if False:",
        "test_fix_verify.py::test_bytes_from_another_tensor",
    ),
    (
        "fixer/verify.py",
        "    _unreadable_kept_as_is(plan, before, after, written)\n",
        "",
        "test_fix_verify.py::test_truncated_shard_is_not_deleted_when_a_rule_stops_blocking",
    ),
    (
        "fixer/verify.py",
        "            if not content.equal(d.record, d.partner):",
        "            if False:",
        "test_fix_verify.py::test_wrong_partner test_fix_verify.py::test_wrong_partner_through_the_cli",
    ),
    (
        "fixer/verify.py",
        "if key in plan.fixed or key not in before_keys:",
        "if key in plan.fixed:",
        "test_fix_verify.py::test_a_new_finding",
    ),
    (
        "fixer/verify.py",
        "if hash_record(fd, record, buffer) != digests[record.name]:",
        "if False:",
        "test_fix.py::test_a_corrupted_copy_is_caught_and_discarded",
    ),
    (
        "fixer/journal.py",
        " or source != tmp_name(final):",
        ":",
        "test_fix_safety.py -k source-not-a-temp or temp-of-another-name",
    ),
    (
        "fixer/journal.py",
        "    return (\n        isinstance(name, str)",
        "    return True or (\n        isinstance(name, str)",
        "test_fix_safety.py -k shard-name",
    ),
    (
        "fixer/journal.py",
        '            raise _refuse(root, f"step {entry!r}: {name} is {kind}")',
        "            pass",
        "test_fix_safety.py -k symlinked",
    ),
    (
        "fixer/apply.py",
        "    try:\n        st = os.lstat(root / name)",
        "    return\n    try:\n        st = os.lstat(root / name)",
        "test_fix_safety.py::test_read_only_shard_is_not_replaced",
    ),
    (
        "fixer/writer.py",
        "    st = source.stat()\n",
        "    return\n    st = source.stat()\n",
        "test_fix_safety.py::test_rewritten_files_keep_mode_owner_and_xattrs",
    ),
    (
        "fixer/plan.py",
        "BLOCKING = BLOCKS_FIX\n",
        "BLOCKING = frozenset()\n",
        "test_fix.py::test_broken_checkpoint_is_refused",
    ),
    (
        "cli/_fix_run.py",
        "        if not can_ask:\n",
        "        if False:\n",
        "test_fix_safety.py::test_no_change_in_place_without_a_prompt_or_yes",
    ),
    (
        "content.py",
        " and bytes(a[body:]) == bytes(b[body:])",
        "",
        "test_fix_verify.py -k deep",
    ),
    (
        "content.py",
        "        return a == b  # memcmp\n",
        "        return a[:-1] == b[:-1]\n",
        "test_fix_speed.py -k pair_compare",
    ),
    (
        "_reading.py",
        "            if a.nbytes - done < size:\n",
        "            if False:\n",
        "test_fix_speed.py -k pair_compare",
    ),
    (
        "fixer/verify.py",
        "        if name not in seen or identity(root / name) != seen[name]:\n",
        "        if False:\n",
        "test_fix_verify.py -k swapped or rewritten",
    ),
    (
        "fixer/apply.py",
        "            flushed.result()\n",
        "",
        "test_fix_safety.py -k reach_the_disk",
    ),
    (
        "fixer/journal.py",
        "        if not (final.endswith(_WRITTEN) or final == _CONFIG):",
        "        if False:",
        "test_fix_safety.py -k replace-with-a-pickle or replace-the-readme",
    ),
    (
        "fixer/journal.py",
        "        if not entry[1].endswith(_REMOVED):",
        "        if False:",
        "test_fix_safety.py -k delete-the-config or delete-the-tokenizer",
    ),
    (
        "fixer/__init__.py",
        "                    exc.changed_before = recovery.describe()",
        "                    pass",
        "test_fix_safety.py::test_a_fix_refused_after_a_recovery_says_the_folder_changed",
    ),
]


def _pytest_args(spec: str) -> list[str]:
    words = spec.split(" -k ", 1)
    args = [str(REPO / "tests" / w) for w in words[0].split()]
    if len(words) == 2:
        args += ["-k", words[1]]
    return args


def main() -> int:
    survivors = []
    only = {int(a) for a in sys.argv[1:]}
    for number, (file, old, new, tests) in enumerate(MUTATIONS, 1):
        if only and number not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "src"
            shutil.copytree(REPO / "src", src)
            path = src / "tiecheck" / file
            text = path.read_text()
            assert text.count(old) == 1, f"mutation {number}: pattern not found once in {file}"
            path.write_text(text.replace(old, new))
            env = {**os.environ, "PYTHONPATH": str(src)}
            args = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *_pytest_args(tests)]
            done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=REPO, check=False)
            caught = done.returncode == 1
            print(f"{number:2d} {'caught  ' if caught else 'SURVIVED'} {file}: {tests}", flush=True)
            if not caught:
                survivors.append(number)
                print(done.stdout[-2000:], done.stderr[-2000:])
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
