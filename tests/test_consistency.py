"""The cache tells the truth: complete stage deps, and committed results that the committed code made."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from defocus.consistency import import_closure, missing_deps, out_of_sync

REPO = Path(__file__).resolve().parents[1]


def test_import_closure_follows_imports_transitively():
    closure = {f.name for f in import_closure(REPO / "stages" / "train.py", REPO / "src")}
    # stages/train.py imports defocus.train, which imports patchsets, which imports patches
    assert {"train.py", "patchsets.py", "patches.py", "dense.py", "hardware.py"} <= closure
    # defocus.backend picks its module at run time: importing the package counts for both
    assert {"tensorflow.py", "jax.py"} <= closure
    assert "matting.py" not in closure and "estimate.py" not in closure  # dense.py no longer imports estimate


def test_every_stage_depends_on_its_import_closure():
    assert missing_deps(REPO) == {}


def _copy(repo: Path, files, with_git=False):
    for f in files:
        if (REPO / f).is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, repo / f)
    if with_git:
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "copy"]):
            subprocess.run(cmd, cwd=repo, check=True, capture_output=True)


def _tracked():
    return subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout.split()


def test_a_removed_dependency_is_found(tmp_path):
    _copy(tmp_path, [f for f in _tracked() if f.startswith(("src/", "stages/")) or f == "dvc.yaml"])
    doc = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    doc["stages"]["infer"]["deps"].remove("src/defocus/estimate.py")
    doc["stages"]["train"]["do"]["deps"].remove("requirements.lock")  # a foreach stage: both networks
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(doc))
    assert missing_deps(tmp_path) == {"infer": ["src/defocus/estimate.py"], "train@bnet": ["requirements.lock"],
                                      "train@enet": ["requirements.lock"]}


def test_committed_results_are_the_committed_codes():
    """dvc.lock's hashes of code, params and reports/ match the files: re-run ./run.sh after a change."""
    problems = out_of_sync(REPO)
    assert problems == [], "dvc.lock and reports/ are not what this code and params.yaml make " \
        "(re-run ./run.sh and commit dvc.lock and reports/):\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    repo = tmp_path_factory.mktemp("clone")
    _copy(repo, [f for f in _tracked() if not f.startswith(("data/", "models/"))] + ["dvc.lock"], with_git=True)
    return repo


@pytest.mark.parametrize("path, edit, expect", [
    ("src/defocus/propagation.py", lambda t: t + "\n# a change without a re-run\n", "src/defocus/propagation.py modified"),
    ("reports/eval/table1.md", lambda t: t + "\nan edited number\n", "reports/eval/table1.md modified"),
    ("params.yaml", lambda t: t.replace("psi: 20 ", "psi: 30 "), "param psi modified"),
])
def test_an_unsynced_change_is_found(clone, path, edit, expect):
    before = (clone / path).read_text()
    assert out_of_sync(clone) == []  # the copy of the committed state is in sync
    try:
        (clone / path).write_text(edit(before))
        problems = out_of_sync(clone)
        assert any(expect in p for p in problems), problems
    finally:
        (clone / path).write_text(before)
