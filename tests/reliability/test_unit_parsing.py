"""The unit-parsing cases (tests/data/unit_parsing.yaml) through a real `systemd --user`: the
environment each started service really gets must be what the case says, and so what fixer's probe
computes (tests/core/test_unit_parsing.py). As root this tier must run; a namespace that fails early
is a failure, not a skip."""

from __future__ import annotations

import pytest

from tests import unit_cases
from tests.reliability import namespace

pytestmark = [pytest.mark.root, pytest.mark.slow]
CASES = unit_cases.load()


@pytest.fixture(scope="module")
def real_environments(tmp_path_factory):
    namespace.require()
    tree, out, work = (tmp_path_factory.mktemp(n) for n in ("tree", "out", "ns"))
    units = [unit_cases.write(str(tree), i, case) for i, case in enumerate(CASES)]
    proc, _ = namespace.run("ns_parse.sh", str(tree), str(out), str(work), *units)
    if proc.returncode != 0 or not (out / "finished").exists():
        namespace.early_failure("ns_parse.sh", proc, str(out / "manager.log"))
    found = {}
    for unit in units:
        path = out / f"{unit}.environ"
        assert path.exists(), f"{unit} did not start: {(out / f'{unit}.err').read_text()}"
        found[unit] = dict(line.split("=", 1) for line in path.read_text().split("\n") if "=" in line)
    return found


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["id"] for c in CASES])
def test_systemd_gives_the_service_what_the_case_says(real_environments, index):
    assert unit_cases.mismatches(CASES[index], real_environments[unit_cases.unit_name(index)]) == []
