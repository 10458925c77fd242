"""Submissions: formats are detected, pickles refused, the contract enforced."""

import pickle

import numpy as np
import pytest
import torch

from cgbg_bench.errors import PMFContractError, UnsupportedFormat
from cgbg_bench.pmf import check_pmf, detect_format, export_pmf, export_program, load_pmf
from tests.conftest import Harmonic


class WrongShape(torch.nn.Module):
    def forward(self, x):
        return (x**2).sum(-1, keepdim=True)


class NaNs(torch.nn.Module):
    def forward(self, x):
        return torch.log(x[:, 0] - 100.0)


class BatchCoupled(torch.nn.Module):
    def forward(self, x):
        return (x[:, 0] - x[:, 0].mean()) ** 2


def test_export_and_torchscript_are_detected_and_match(tmp_path, toy_task):
    export_pmf(Harmonic(), toy_task, tmp_path / "m.pt2")
    torch.jit.save(torch.jit.script(Harmonic()), tmp_path / "m.pt")
    assert detect_format(tmp_path / "m.pt2") == "export"
    assert detect_format(tmp_path / "m.pt") == "torchscript"
    x = torch.linspace(-3, 3, 11).reshape(11, 1)
    for f in ("m.pt2", "m.pt"):
        out = load_pmf(tmp_path / f, "cpu")(x)
        torch.testing.assert_close(out, 0.5 * x[:, 0] ** 2)
        check_pmf(tmp_path / f, toy_task, device="cpu")


@pytest.mark.parametrize("what", ["module", "state_dict", "legacy"])
def test_pickles_are_refused_with_a_fix(tmp_path, what):
    path = tmp_path / "bad.pt"
    obj = Harmonic() if what == "module" else torch.nn.Linear(1, 1).state_dict()
    if what == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, path)
    with pytest.raises(UnsupportedFormat, match="never unpickled.*export_pmf"):
        load_pmf(path, "cpu")


def test_other_files_are_refused(tmp_path):
    (tmp_path / "x.pt2").write_bytes(b"hello world")
    with pytest.raises(UnsupportedFormat, match="not a torch archive"):
        detect_format(tmp_path / "x.pt2")
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UnsupportedFormat, match="pickle"):
        detect_format(tmp_path / "p.pkl")
    with pytest.raises(UnsupportedFormat, match="no such file"):
        detect_format(tmp_path / "missing.pt2")


@pytest.mark.parametrize(
    "module, match",
    [(WrongShape(), r"returned shape \(7, 1\); expected \(7,\)"), (NaNs(), "NaN or inf"),
     (BatchCoupled(), "changes with the other configurations")],
)
def test_contract_violations_are_named(toy_task, module, match):
    with pytest.raises(PMFContractError, match=match):
        check_pmf(module, toy_task, device="cpu")


def test_static_batch_export_is_refused(tmp_path, toy_task):
    program = torch.export.export(Harmonic(), (torch.zeros(7, 1),))  # no dynamic batch dimension
    torch.export.save(program, tmp_path / "static.pt2")
    with pytest.raises(PMFContractError, match="batch size"):
        check_pmf(tmp_path / "static.pt2", toy_task, device="cpu")


def test_export_pmf_leaves_nothing_when_the_contract_fails(tmp_path, toy_task):
    with pytest.raises(PMFContractError):
        export_pmf(WrongShape(), toy_task, tmp_path / "w.pt2")
    assert list(tmp_path.iterdir()) == []


def test_autograd_forces_through_loaded_export(tmp_path):
    export_program(Harmonic(), torch.zeros(4, 1), tmp_path / "h.pt2")
    module = load_pmf(tmp_path / "h.pt2", "cpu")
    x = torch.tensor([[1.5], [-0.5]], requires_grad=True)
    (force,) = torch.autograd.grad(-module(x).sum(), x)
    np.testing.assert_allclose(force.numpy(), [[-1.5], [0.5]], rtol=1e-6)
