"""Tests of renyilib.experiments.prerequisites: a chapter's missing inputs are named with their command."""

from __future__ import annotations

import pytest

from renyilib.experiments import zoo
from renyilib.experiments.io import write_json
from renyilib.experiments.prerequisites import (
    MissingInputError,
    require_files,
    require_zoo,
    zoo_command,
)


def _finish(out, config, name="metrics.json"):
    write_json(zoo.run_dir(out, config) / name, {"done": True})


def test_require_zoo_nothing_trained(tmp_path):
    with pytest.raises(MissingInputError) as err:
        require_zoo("digits-cnn", "smoke", tmp_path)
    msg = str(err.value)
    assert msg.startswith("no run of the digits-cnn zoo (smoke profile")
    assert "`renyilib zoo run --task digits-cnn --profile smoke`" in msg
    assert msg.count(". ") == 0  # one sentence
    assert isinstance(err.value, FileNotFoundError)


def test_require_zoo_partial_failed_and_complete(tmp_path):
    configs = zoo.grid("digits-cnn", "smoke")
    assert len(configs) >= 3
    _finish(tmp_path, configs[0])
    with pytest.raises(MissingInputError, match=rf"{len(configs) - 1} of the {len(configs)} runs"):
        require_zoo("digits-cnn", "smoke", tmp_path)
    for c in configs[1:-1]:
        _finish(tmp_path, c)
    _finish(tmp_path, configs[-1], "error.json")  # a failed run counts as present ...
    assert require_zoo("digits-cnn", "smoke", tmp_path) == configs
    with pytest.raises(MissingInputError, match="1 of the"):  # ... unless asked otherwise
        require_zoo("digits-cnn", "smoke", tmp_path, allow_failed=False)
    assert zoo_command("t", "paper") == "renyilib zoo run --task t --profile paper"


def test_require_files(tmp_path):
    (tmp_path / "a.csv").write_text("x\n")
    assert require_files(tmp_path, ["a.csv"], what="w", command="c") == tmp_path
    with pytest.raises(
        MissingInputError, match=r"w \(b.csv\) are not in .*: make them with `make b`"
    ):
        require_files(tmp_path, ["a.csv", "b.csv"], what="w", command="make b")
    with pytest.raises(ValueError, match="names"):
        require_files(tmp_path, [], what="w", command="c")
