"""systemd semantics: quoting, drop-in order across directories, and the effective environment."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixer.facts import systemd as unitfile
from fixer.facts.host import probe_unit


@pytest.mark.parametrize(
    "value, words",
    [
        ('"A=b c" D=e', ["A=b c", "D=e"]),
        ("'G=h\"i'", ['G=h"i']),
        ('"P=100%%"', ["P=100%"]),
        (r'"Q=a\"b"', ['Q=a"b']),
        (r'"R=back\\slash"', ["R=back\\slash"]),
        ("  S=1\tT=2  ", ["S=1", "T=2"]),
        ("", []),
    ],
)
def test_environment_values_split_like_systemd(value, words):
    assert unitfile.split_words(value) == words


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=60))
def test_quoting_round_trips_any_value_systemd_can_carry(value):
    assert unitfile.split_words(unitfile.quote_assignment("X", value)) == [f"X={value}"]


def test_continuation_lines_are_joined_raw_with_the_backslash_as_a_space():
    settings = unitfile.parse('[Service]\nEnvironment="A=1" \\\n  "B=2"\n')
    assert [(s.key, s.value) for s in settings] == [("Environment", '"A=1"    "B=2"')]


def files(*texts: str) -> list[tuple[str, list]]:
    return [(f"f{i}", unitfile.parse(t)) for i, t in enumerate(texts)]


@pytest.mark.parametrize(
    "texts, expected",
    [
        (["[Service]\nEnvironment=A=1\n", "[Service]\nEnvironment=A=2\n"], {"A": "2"}),
        (["[Service]\nEnvironment=A=1 B=2\n", "[Service]\nEnvironment=\nEnvironment=C=3\n"], {"C": "3"}),
        (["[Service]\nEnvironment=A=1 B=2\n", "[Service]\nUnsetEnvironment=A\n"], {"B": "2"}),
        (["[Service]\nUnsetEnvironment=A\n", "[Service]\nEnvironment=A=1\n"], {}),
        (["[Service]\nEnvironment=A=1\n", "[Service]\nUnsetEnvironment=A=2\n"], {"A": "1"}),
        (["[Service]\nEnvironment=A=1\n", "[Service]\nUnsetEnvironment=A=1\n"], {}),
        (["[Service]\nUnsetEnvironment=A\n", "[Service]\nUnsetEnvironment=\nEnvironment=A=1\n"], {"A": "1"}),
        (["[Unit]\nEnvironment=A=1\n"], {}),
    ],
    ids=["later-wins", "empty-resets", "unset-removes", "unset-applies-after-all-files",
         "unset-name-value-other-value", "unset-name-value-exact", "empty-unset-resets", "only-service-section"],
)
def test_effective_environment(texts, expected):
    assert unitfile.merge_environment(files(*texts)).effective() == expected


def put(root, path, text):
    real = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(real), exist_ok=True)
    with open(real, "w") as fh:
        fh.write(text)


def test_dropins_merge_in_file_name_order_across_directories(tmp_path):
    root = str(tmp_path)
    put(root, "/usr/lib/systemd/system/ollama.service", "[Service]\nExecStart=/usr/bin/ollama serve\n")
    put(root, "/usr/lib/systemd/system/ollama.service.d/50-vendor.conf", "[Service]\nEnvironment=A=vendor\n")
    put(root, "/etc/systemd/system/ollama.service.d/override.conf", "[Service]\nEnvironment=A=override B=1\n")
    put(root, "/etc/systemd/system/ollama.service.d/90-lab.conf", "[Service]\nEnvironment=A=lab\n")
    unit = probe_unit(root, "ollama.service")
    assert [os.path.basename(d.path) for d in unit.dropins] == ["50-vendor.conf", "90-lab.conf", "override.conf"]
    assert unit.environment.effective() == {"A": "override", "B": "1"}
    assert unit.environment.origin["A"].endswith("override.conf")


def test_a_dropin_in_etc_masks_the_same_name_in_usr(tmp_path):
    root = str(tmp_path)
    put(root, "/usr/lib/systemd/system/ollama.service", "[Service]\nExecStart=/x\n")
    put(root, "/usr/lib/systemd/system/ollama.service.d/10-x.conf", "[Service]\nEnvironment=A=usr\n")
    put(root, "/etc/systemd/system/ollama.service.d/10-x.conf", "[Service]\nEnvironment=A=etc\n")
    unit = probe_unit(root, "ollama.service")
    assert [d.path for d in unit.dropins] == ["/etc/systemd/system/ollama.service.d/10-x.conf"]
    assert unit.environment.effective() == {"A": "etc"}


def test_unit_file_in_etc_wins_over_usr(tmp_path):
    root = str(tmp_path)
    put(root, "/usr/lib/systemd/system/ollama.service", "[Service]\nExecStart=/usr/bin/ollama serve\n")
    put(root, "/etc/systemd/system/ollama.service", "[Service]\nExecStart=/usr/local/bin/ollama serve\n")
    assert probe_unit(root, "ollama.service").exec_start == "/usr/local/bin/ollama serve"


def test_dropin_without_service_header_is_ignored(tmp_path):
    root = str(tmp_path)
    put(root, "/etc/systemd/system/ollama.service", "[Service]\nExecStart=/x\n")
    put(root, "/etc/systemd/system/ollama.service.d/override.conf", "Environment=A=1\n")
    unit = probe_unit(root, "ollama.service")
    assert unit.environment.effective() == {}
    assert not unit.dropins[0].has_service_section


def test_type_level_dropins_apply_to_every_service(tmp_path):
    root = str(tmp_path)
    put(root, "/etc/systemd/system/ollama.service", "[Service]\nExecStart=/x\n")
    put(root, "/etc/systemd/system/service.d/10-all.conf", "[Service]\nEnvironment=ALL=1\n")
    assert probe_unit(root, "ollama.service").environment.effective() == {"ALL": "1"}
