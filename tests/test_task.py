"""Task loading: the schema is strict and every failure names the problem."""

import numpy as np
import pytest
import yaml

from cgbg_bench.errors import DataError, HashMismatch, TaskFileMissing, TaskNotFound, TaskSchemaError
from cgbg_bench.task import load_task
from tests.conftest import write_toy_task


def _edit(task_dir, **changes):
    path = task_dir / "task.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        data[key] = value
    path.write_text(yaml.safe_dump(data))
    return data


def test_loads_into_frozen_dataclass(toy_task):
    assert toy_task.name == "toy" and toy_task.version == 3 and toy_task.input_shape == (1,)
    assert toy_task.observables[0].bins == (40,)
    with pytest.raises(AttributeError):
        toy_task.name = "other"
    bank = toy_task.load_proposal()
    assert bank.positions.shape == (20000, 1) and bank.log_q.dtype == np.float64


def test_unknown_key_suggests_the_right_one(tmp_path):
    d = write_toy_task(tmp_path)
    data = yaml.safe_load((d / "task.yaml").read_text())
    data["metrics"]["n_boostrap"] = data["metrics"].pop("n_bootstrap")
    (d / "task.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(TaskSchemaError, match="n_boostrap.*did you mean 'n_bootstrap'"):
        load_task("toy", root=tmp_path)


def test_missing_key_and_wrong_type(tmp_path):
    d = write_toy_task(tmp_path)
    data = yaml.safe_load((d / "task.yaml").read_text())
    del data["kT"]
    (d / "task.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(TaskSchemaError, match="missing required key.*kT"):
        load_task("toy", root=tmp_path)
    _edit(d, kT="warm")
    with pytest.raises(TaskSchemaError, match="kT"):
        load_task("toy", root=tmp_path)


def test_task_not_found_suggests_close_names(toy_root):
    with pytest.raises(TaskNotFound, match="did you mean toy"):
        load_task("tyo", root=toy_root)


def test_hash_mismatch_and_missing_file(tmp_path):
    d = write_toy_task(tmp_path)
    task = load_task("toy", root=tmp_path)
    with np.load(d / "proposal.npz") as z:
        pos, lq = z["positions"], z["log_q"]
    np.savez_compressed(d / "proposal.npz", positions=pos, log_q=lq + 1e-3)
    with pytest.raises(HashMismatch, match="sha256"):
        task.load_proposal()
    (d / "reference.npz").unlink()
    with pytest.raises(TaskFileMissing, match="not on disk"):
        task.load_reference()


def test_bank_with_nan_or_wrong_shape_is_refused(tmp_path):
    from cgbg_bench._io import sha256_file

    d = write_toy_task(tmp_path)
    for positions, match in ((np.full((10, 1), np.nan, np.float32), "NaN"),
                             (np.zeros((10, 2), np.float32), "per-sample shape")):
        np.savez_compressed(d / "proposal.npz", positions=positions, log_q=np.zeros(10))
        data = yaml.safe_load((d / "task.yaml").read_text())
        data["proposal"]["sha256"] = sha256_file(d / "proposal.npz")
        (d / "task.yaml").write_text(yaml.safe_dump(data))
        with pytest.raises(DataError, match=match):
            load_task("toy", root=tmp_path).load_proposal()


@pytest.mark.parametrize(
    "observable, match",
    [
        ({"name": "x", "kind": "coordinate", "index": [3], "bins": 10, "range": [0, 1]}, "outside input shape"),
        ({"name": "x", "kind": "coordinate", "index": [0], "bins": 10, "range": [1, 0]}, "low < high"),
        ({"name": "x", "kind": "angle", "bins": 10}, "not one of"),
        ({"name": "x", "kind": "coordinate", "index": [0], "bins": 0, "range": [0, 1]}, "positive"),
    ],
)
def test_bad_observables(tmp_path, observable, match):
    d = write_toy_task(tmp_path)
    _edit(d, observables=[observable])
    with pytest.raises(TaskSchemaError, match=match):
        load_task("toy", root=tmp_path)


def test_dihedral_pair_validation(tmp_path):
    d = write_toy_task(tmp_path)
    _edit(d, n_beads=4, input_shape=[4, 3],
          observables=[{"name": "r1", "kind": "dihedral_pair", "phi": [0, 1, 2, 4], "psi": [0, 1, 2, 3],
                        "bins": 10}])
    with pytest.raises(TaskSchemaError, match="4 distinct indices < 4"):
        load_task("toy", root=tmp_path)


def test_load_by_path(toy_root):
    assert load_task(toy_root / "toy").name == "toy"
    assert load_task(toy_root / "toy" / "task.yaml").name == "toy"
