"""The per-residue table under the score table (cgbg_bench.report.per_observable_table)."""

from cgbg_bench.report import per_observable_table


def _m(v, e):
    return {"value": v, "error": e}


def test_every_residue_beside_its_floor_headline_marked():
    per = {"ala2": {"js": _m(0.0123, 0.0011), "js_floor": _m(0.003, 0.0002)},
           "ala1": {"js": _m(0.05, 0.004), "js_floor": _m(0.004, 0.0003)}}
    text = per_observable_table([("my.pt2", per), ("gb-obc2", {"ala2": {"js": _m(0.2, 0.01)}})])
    header, _, own, gb, note = text.splitlines()
    assert header.split("|")[2].strip() == "ala2 (headline)" and header.split("|")[3].strip() == "ala1"
    assert "0.012(1) / 0.0030(2)" in own and "0.050(4) / 0.0040(3)" in own
    assert gb.split("|")[2].strip() == "0.20(1)" and gb.split("|")[3].strip() == "-"
    assert "not ranked" in note


def test_nothing_for_a_single_observable():
    assert per_observable_table([("my.pt2", {"x": {"js": _m(0.1, 0.01), "js_floor": _m(0.01, 0.001)}})]) == ""
