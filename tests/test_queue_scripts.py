"""scripts/queue-gb.sh and scripts/queue-explicit.sh: the md commands they run, in order (a stub
cgbg-bench on PATH records them; no MD)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# `md run ... --ns X --out DIR` records its argv and stores X as DIR's length; `md status --json DIR`
# reports it. Nothing else is needed by the scripts.
STUB = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1] if "--out" in args else args[-1])
if args[:2] == ["md", "run"]:
    with open(os.environ["STUB_LOG"], "a") as fh:
        fh.write(json.dumps(args) + "\\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text("{{}}")
    (out / "ns").write_text(args[args.index("--ns") + 1])
elif args[:3] == ["md", "status", "--json"]:
    print(json.dumps({{"ns_done": float((out / "ns").read_text())}}))
else:
    sys.exit(f"stub: unexpected {{args}}")
"""


def _run(tmp_path: Path, script: str, **env) -> tuple[subprocess.CompletedProcess, list[dict]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "cgbg-bench"
    stub.write_text(STUB)
    stub.chmod(0o755)
    (tmp_path / "logs").mkdir(exist_ok=True)
    log = tmp_path / "calls.jsonl"
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STUB_LOG": str(log), **env}
    r = subprocess.run(["bash", str(ROOT / "scripts" / script)], cwd=tmp_path, env=full_env, capture_output=True,
                       text=True, timeout=120)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return r, [_options(c) for c in calls]


def _options(argv: list[str]) -> dict:
    """--flag value pairs of an md run command line."""
    assert argv[:2] == ["md", "run"], shlex.join(argv)
    it = iter(argv[2:])
    return {flag: next(it) for flag in it}


def test_queue_explicit_runs_the_metadynamics_then_grows_the_walkers_in_passes(tmp_path):
    r, calls = _run(tmp_path, "queue-explicit.sh", EXPLICIT_SYSTEM="ala6", EXPLICIT_MAX_NS="0.8")
    assert r.returncode == 0, r.stderr
    metad, *production = calls
    assert (metad["--bias"], metad["--seed"], metad["--ns"], metad["--out"]) == (
        "wtmetad", "201", "3.2", "data/ala6/explicit-wtmetad-rd16")
    for c in calls:
        assert (c["--system"], c["--solvent"], c["--box-shape"], c["--image-distance"], c["--chunk-ps"]) == (
            "ala6", "explicit", "dodecahedron", "1.6", "200")
    # two passes of 0.4 ns (two 200 ps chunks) up to EXPLICIT_MAX_NS, then it stops
    expected = [(out, seed, ns) for ns in ("0.4", "0.8") for out, seed in (
        ("explicit-static-rd16-1", "202"), ("explicit-unbiased-rd16", "204"), ("explicit-static-rd16-2", "203"))]
    assert [(c["--out"].rsplit("/", 1)[1], c["--seed"], c["--ns"]) for c in production] == expected
    for c in production:
        if "static" in c["--out"]:
            assert (c["--bias"], c["--bias-from"]) == ("static", "data/ala6/explicit-wtmetad-rd16")
        else:
            assert c["--bias"] == "none" and "--bias-from" not in c


def test_queue_explicit_resumes_a_run_from_its_length_and_picks_runs(tmp_path):
    r, _ = _run(tmp_path, "queue-explicit.sh", EXPLICIT_SYSTEM="ala3", EXPLICIT_RUNS="static-2",
                EXPLICIT_MAX_NS="1.0")
    assert r.returncode == 0, r.stderr
    (tmp_path / "calls.jsonl").unlink()
    r, calls = _run(tmp_path, "queue-explicit.sh", EXPLICIT_SYSTEM="ala3", EXPLICIT_RUNS="static-2",
                    EXPLICIT_MAX_NS="2.0")
    assert r.returncode == 0, r.stderr
    assert [(c["--out"], c["--seed"], c["--ns"], c["--chunk-ps"]) for c in calls[1:]] == [
        ("data/ala3/explicit-static-rd16-2", "103", ns, "400") for ns in ("1.8", "2.0")]


@pytest.mark.parametrize("env, message", [
    ({"EXPLICIT_SYSTEM": "ala9"}, "no seeds for ala9"),
    ({"EXPLICIT_RUNS": "static-3", "EXPLICIT_MAX_NS": "1"}, "unknown run static-3"),
])
def test_queue_explicit_refuses_what_it_does_not_know(tmp_path, env, message):
    r, _ = _run(tmp_path, "queue-explicit.sh", **env)
    assert r.returncode == 2 and message in r.stderr


def test_queue_gb_ala2_runs_both_models_to_100_ns_and_ala6_to_16(tmp_path):
    r, calls = _run(tmp_path, "queue-gb.sh")
    assert r.returncode == 0, r.stderr
    assert [(c["--solvent"], c["--bias"], c["--seed"], c["--ns"], c["--out"]) for c in calls] == [
        ("obc2", "wtmetad", "31", "3.2", "data/ala2/obc2-wtmetad"),
        ("obc2", "static", "32", "100", "data/ala2/obc2-static-1"),
        ("obc2", "static", "33", "100", "data/ala2/obc2-static-2"),
        ("obc1", "wtmetad", "41", "3.2", "data/ala2/obc1-wtmetad"),
        ("obc1", "static", "42", "100", "data/ala2/obc1-static-1"),
        ("obc1", "static", "43", "100", "data/ala2/obc1-static-2"),
    ]
    (tmp_path / "calls.jsonl").unlink()
    r, calls = _run(tmp_path, "queue-gb.sh", GB_SYSTEM="ala6")
    assert r.returncode == 0, r.stderr
    assert [(c["--system"], c["--seed"], c["--ns"], c.get("--bias-from")) for c in calls] == [
        ("ala6", "221", "3.2", None), ("ala6", "222", "16", "data/ala6/obc2-wtmetad"),
        ("ala6", "223", "16", "data/ala6/obc2-wtmetad")]
