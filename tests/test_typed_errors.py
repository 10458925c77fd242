"""The library raises the typed errors of cgbg_bench.errors naming its own parameters; the CLI
writes those parameter names as its flags."""

from __future__ import annotations

import numpy as np
import pytest

from cgbg_bench.errors import CgbgError, DataError, MDError, OutputPathError, UsageError


def _bad_inputs():
    from cgbg_bench import metrics, observables, progress, reference
    from cgbg_bench.flows import internal

    blocks = np.ones((3, 1, reference.DIHEDRAL_BINS**2))
    return [
        ("merge_blocks group 0", lambda: reference.merge_blocks(blocks, 0), UsageError, "group"),
        ("compare_basins n_reference 0", lambda: reference.compare_basins(["a"], [blocks], 0), UsageError,
         "n_reference"),
        ("compare_basins names", lambda: reference.compare_basins(["a"], [blocks, blocks], 1), UsageError, "names"),
        ("combine_reference residues []", lambda: reference.combine_reference([], 1.0, []), UsageError, "residues"),
        ("quality_report first_half", lambda: reference.quality_report(blocks, n_bootstrap=4,
                                                                       first_half=np.ones(3, bool)),
         UsageError, "first_half"),
        ("basin_populations no block", lambda: reference.basin_populations(blocks[:0]), DataError, "block_hist"),
        ("normalized_weights nothing kept", lambda: metrics.normalized_weights(np.zeros(3), np.zeros(3, bool)),
         DataError, "keep"),
        ("normalized_weights NaN", lambda: metrics.normalized_weights(np.array([0.0, np.nan])), DataError,
         "not finite"),
        ("dihedral of 2-D positions", lambda: observables.dihedral(np.zeros((2, 3)), (0, 1, 2, 3)), DataError,
         "positions"),
        ("Progress display", lambda: progress.Progress(3, display="fancy"), UsageError, "display"),
        ("flow mixture", lambda: internal._check_mixture(1.5, 0.0), UsageError, "uniform"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_inputs())), ids=[c[0] for c in _bad_inputs()])
def test_bad_inputs_raise_typed_errors_naming_the_parameter(case):
    _, call, error, name = _bad_inputs()[case]
    with pytest.raises(error, match=name) as info:
        call()
    assert isinstance(info.value, ValueError)  # callers that catch ValueError keep working
    assert "--" not in str(info.value)  # a parameter, not a flag


def test_export_program_refuses_another_suffix(tmp_path):
    import torch

    from cgbg_bench.pmf import export_program

    with pytest.raises(OutputPathError, match="path .*suffix .pt2"):
        export_program(torch.nn.Linear(1, 1), torch.zeros(2, 1), tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_flags_for_params_replaces_whole_names_only():
    from cgbg_bench.cli._args import flags_for_params

    flags = {"block_ps": "--block-ps", "max_chunks": "--max-chunks", "out_dir": "--out"}
    assert flags_for_params("pass a smaller block_ps or let the run grow", flags) == \
        "pass a smaller --block-ps or let the run grow"
    assert flags_for_params("readable with max_chunks data/x=3.", flags) == "readable with --max-chunks data/x=3."
    assert flags_for_params("start a new run in another out_dir.", flags) == "start a new run in another --out."
    untouched = "task.yaml: metrics.block_ps, basin_block_ps, data/block_ps/x, --block-ps, block_ps_2"
    assert flags_for_params(untouched, flags) == untouched
    assert flags_for_params("block_ps 3", {}) == "block_ps 3"


def test_param_flags_are_the_flags_of_the_command_that_ran():
    from cgbg_bench.cli import build_parser
    from cgbg_bench.cli._args import param_flags

    parser = build_parser()
    report = param_flags(parser, parser.parse_args(["md", "report", "--reference", "x"]))
    assert report["block_ps"] == "--block-ps" and report["max_chunks"] == "--max-chunks"
    assert "bias_from" not in report and "reference" not in report  # another command's; a one-word dest
    run = param_flags(parser, parser.parse_args(["md", "run", "--system", "ala2", "--solvent", "vacuum",
                                                 "--ns", "1", "--out", "x"]))
    assert run["bias_from"] == "--bias-from" and run["bias_residue"] == "--bias-residue"
    assert run["out_dir"] == "--out"  # the library's name differs from the dest
    ev = param_flags(parser, parser.parse_args(["evaluate", "m.pt2", "--task", "t"]))
    assert (ev["timeout_s"], ev["memory_gb"], ev["batch_size"]) == ("--timeout", "--memory-limit", "--batch-size")


def test_md_run_error_names_the_parameter_in_the_library_and_the_flag_in_the_cli(tmp_path, capsys):
    from cgbg_bench.cli import main
    from cgbg_bench.md.production import RunSettings, run

    with pytest.raises(MDError, match="bias_from") as info:
        run(RunSettings("ala2", "vacuum", "static"), tmp_path / "a", ns=0.001)
    assert "--" not in str(info.value) and isinstance(info.value, CgbgError)
    assert main(["md", "run", "--system", "ala2", "--solvent", "vacuum", "--bias", "static", "--ns", "0.001",
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "MDError" in err and "needs --bias-from" in err and "bias_from" not in err


def test_md_report_names_reference_dirs_in_the_library_and_reference_in_the_cli(tmp_path, capsys):
    import json

    from cgbg_bench.cli import main
    from cgbg_bench.md.report import data_report

    (tmp_path / "run.json").write_text(json.dumps({"settings": {"bias": "wtmetad", "dihedral_interval_ps": 0.1}}))
    with pytest.raises(UsageError, match="reference_dirs has no unbiased or static-bias run"):
        data_report([tmp_path], {}, kT=2.4943)
    assert main(["md", "report", "--reference", str(tmp_path)]) == 2
    assert "UsageError: --reference has no unbiased or static-bias run" in capsys.readouterr().err
