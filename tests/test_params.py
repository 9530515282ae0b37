import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml

from defocus import cli
from defocus.params import _flatten, apply_profile, load_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def params_copy(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copyfile(ROOT / "params.yaml", path)
    return path


def _comments(text):
    """Full comment lines and the text of inline comments, in order."""
    full = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    inline = [line[line.index(" #") :].strip() for line in text.splitlines()
              if " #" in line and not line.lstrip().startswith("#")]
    return full, inline


def _comment_columns(text):
    return {line.split(":")[0]: line.index(" #") for line in text.splitlines()
            if " #" in line and not line.lstrip().startswith("#")}


@pytest.mark.parametrize("name", ["tiny", "paper", "enet"])
def test_apply_profile_sets_its_values_and_keeps_the_rest(params_copy, name):
    before_text = params_copy.read_text()
    before = load_params(params_copy)
    profile = yaml.safe_load((ROOT / "profiles" / f"{name}.yaml").read_text())
    wanted = _flatten(profile)
    assert wanted and all(k in _flatten(before) for k in wanted)

    changed = apply_profile(ROOT / "profiles" / f"{name}.yaml", params_copy)
    assert changed == sorted(wanted)
    text = params_copy.read_text()
    after = _flatten(load_params(params_copy))
    for key, value in _flatten(before).items():
        assert after[key] == wanted.get(key, value), key
    assert set(after) == set(_flatten(before))
    assert any(after[k] != v for k, v in _flatten(before).items())  # the profile changed something
    # comments, their columns, the order of keys and the line count are kept
    assert _comments(text) == _comments(before_text)
    assert _comment_columns(text) == _comment_columns(before_text)
    assert len(text.splitlines()) == len(before_text.splitlines())
    keys = lambda t: re.findall(r"^ *([A-Za-z_][\w-]*):", t, re.M)  # noqa: E731
    assert keys(text) == keys(before_text)
    # lines the profile does not touch are byte for byte the same
    touched = {k.split(".")[-1] for k in wanted}
    for old, new in zip(before_text.splitlines(), text.splitlines()):
        if old.strip().split(":")[0] not in touched:
            assert old == new
    # applying it again changes nothing
    apply_profile(ROOT / "profiles" / f"{name}.yaml", params_copy)
    assert params_copy.read_text() == text


def _profile(name):
    return _flatten(yaml.safe_load((ROOT / "profiles" / f"{name}.yaml").read_text()))


def test_profiles_one_after_the_other(params_copy):
    expect = _flatten(load_params(params_copy))
    apply_profile(ROOT / "profiles" / "paper.yaml", params_copy)
    apply_profile(ROOT / "profiles" / "tiny.yaml", params_copy)
    expect.update(_profile("paper"))
    expect.update(_profile("tiny"))
    assert _flatten(load_params(params_copy)) == expect
    assert set(_profile("paper")) - set(_profile("tiny"))  # some paper values survive tiny


def test_apply_profile_from_a_dict_with_new_types(params_copy):
    changed = apply_profile({"psi": 100, "patches": {"rotations": [90, 180], "canny_sigma": 1.5},
                             "split": {"val_fraction": 0.25}}, params_copy)
    assert changed == ["patches.canny_sigma", "patches.rotations", "psi", "split.val_fraction"]
    p = load_params(params_copy)
    assert p["psi"] == 100 and p["patches"]["rotations"] == [90, 180]
    assert p["patches"]["canny_sigma"] == 1.5 and p["split"]["val_fraction"] == 0.25
    text = params_copy.read_text()
    assert "psi: 100                      # depth-edge penalty" in text
    assert "  rotations: [90, 180]" in text and "# degrees; the paper's augmentation" in text


def test_unknown_key_raises_and_leaves_the_file(params_copy, tmp_path):
    before = params_copy.read_bytes()
    with pytest.raises(KeyError, match="download.nonsense"):
        apply_profile({"download": {"sharp": 5, "nonsense": 1}}, params_copy)
    assert params_copy.read_bytes() == before
    with pytest.raises(KeyError, match="train"):
        apply_profile({"train": {"epochs": 3}}, params_copy)
    with pytest.raises(KeyError, match="section"):
        apply_profile({"download": 3}, params_copy)
    assert params_copy.read_bytes() == before
    profile = tmp_path / "bad.yaml"
    profile.write_text("patches:\n  bnet_per_levl: 10\n")
    with pytest.raises(KeyError, match="bnet_per_levl"):
        apply_profile(profile, params_copy)
    assert params_copy.read_bytes() == before


def test_flow_mapping_keys(params_copy):
    apply_profile({"download": {"urls": {"coco": "http://x/y.zip"}}}, params_copy)
    p = load_params(params_copy)
    assert p["download"]["urls"] == {"coco": "http://x/y.zip"}
    assert p["download"]["sha256"] == {}
    apply_profile({"download": {"urls": {"dbd": "https://a.b/c?d=1: e"}, "sha256": {"coco": "ab" * 32}}}, params_copy)
    p = load_params(params_copy)
    assert p["download"]["urls"] == {"coco": "http://x/y.zip", "dbd": "https://a.b/c?d=1: e"}
    assert p["download"]["sha256"] == {"coco": "ab" * 32}
    assert "# dataset -> archive URL, replacing the official one (see README)" in params_copy.read_text()
    # the mirror can be emptied ("" = none)
    apply_profile({"download": {"mirror": ""}}, params_copy)
    assert load_params(params_copy)["download"]["mirror"] == ""
    before = copy.deepcopy(p)
    before["download"]["mirror"] = ""
    assert load_params(params_copy) == before


def test_cli_profile(params_copy, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(ROOT)
    assert cli.main(["profile", "tiny", "--params", str(params_copy)]) == 0
    tiny = _profile("tiny")
    assert all(_flatten(load_params(params_copy))[k] == v for k, v in tiny.items())
    out = capsys.readouterr().out
    assert str(params_copy) in out and "download.sharp" in out and "tiny.yaml" in out
    before = params_copy.read_bytes()
    assert cli.main(["profile", "huge", "--params", str(params_copy)]) == 2
    err = capsys.readouterr().err
    assert "no such profile" in err
    assert all(p.stem in err for p in (ROOT / "profiles").glob("*.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("download:\n  nonsense: 1\n")
    assert cli.main(["profile", str(bad), "--params", str(params_copy)]) == 2
    assert "nonsense" in capsys.readouterr().err
    assert params_copy.read_bytes() == before
    assert cli.main(["profile", str(ROOT / "profiles" / "paper.yaml"), "--params", str(params_copy)]) == 0
    assert all(_flatten(load_params(params_copy))[k] == v for k, v in _profile("paper").items())


def test_flow_mapping_with_a_hash_in_a_value(params_copy):
    apply_profile({"download": {"urls": {"coco": "http://x/y.zip#frag"}}}, params_copy)
    assert load_params(params_copy)["download"]["urls"] == {"coco": "http://x/y.zip#frag"}
    apply_profile({"download": {"urls": {"dbd": "http://a/b.zip"}}}, params_copy)
    assert load_params(params_copy)["download"]["urls"] == {"coco": "http://x/y.zip#frag", "dbd": "http://a/b.zip"}
