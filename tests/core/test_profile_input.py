"""Profiles as operators hand them over: on stdin, by mistake as a directory, misspelt, or shadowed by a site copy."""

from __future__ import annotations

import json
import os

import pytest

PROFILE = "name: piped\nextends: h100-vgpu\nservice:\n  environment:\n    OLLAMA_LOAD_TIMEOUT: 7m\n"


def test_dash_reads_the_profile_from_stdin(seed_root):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "fixer", "plan", "-p", "-", "--root", seed_root, "--json"],
                            input=PROFILE, capture_output=True, text=True)
    doc = json.loads(result.stdout)
    assert result.returncode == 4 and doc["profile"] == "piped"
    dropin = next(c for c in doc["changes"] if c["kind"] == "dropin")
    assert any("OLLAMA_LOAD_TIMEOUT=7m" in d["after"] for d in doc["diff"] if "zz-vgpu-fix" in d["after_header"])
    assert dropin["action"] == "create"


def test_dash_with_a_terminal_on_stdin_says_to_pipe_a_profile(seed_root):
    from tests import terminal

    session = terminal.run(["plan", "-p", "-", "--root", seed_root])
    assert session.returncode == 3 and "reads the profile from stdin, which is a terminal" in session.terminal


def test_a_directory_given_as_a_profile_says_so_and_names_its_yaml_files(cli, tmp_path):
    (tmp_path / "lab.yaml").write_text("name: lab\n")
    result = cli("profiles", "show", str(tmp_path))
    assert result.returncode == 3
    assert f"profile {tmp_path} is a directory, not a profile file" in result.stderr and "lab.yaml" in result.stderr
    assert "does not exist" not in result.stderr


@pytest.mark.parametrize("yaml_text, location, hint", [
    ("service:\n  enviroment: {A: b}\n", "service.enviroment", "did you mean `environment`?"),
    ("environment: {A: b}\n", "environment", "did you mean `service.environment`?"),
    ("verify:\n  libary: cuda_v12\n", "verify.libary", "did you mean `library`?"),
    ("symlinks:\n  - {path: /a/b, taget: c}\n", "symlinks.0.taget", "did you mean `target`?"),
    ("watch:\n  enable: true\n", "watch.enable", "did you mean `enabled`?"),
])
def test_an_unknown_key_gets_the_closest_known_one(cli, tmp_path, yaml_text, location, hint):
    path = tmp_path / "typo.yaml"
    path.write_text("name: typo\n" + yaml_text)
    result = cli("profiles", "show", str(path))
    assert result.returncode == 3
    line = next(line for line in result.stderr.splitlines() if f": {location}: unknown key" in line)
    assert line.endswith(hint)


def test_an_unknown_key_far_from_any_known_one_gets_no_guess(cli, tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text("name: odd\nzzzqqq: 1\n")
    line = next(line for line in cli("profiles", "show", str(path)).stderr.splitlines() if "unknown key" in line)
    assert line.endswith("unknown key 'zzzqqq'")


def test_a_site_profile_that_shadows_a_shipped_one_is_named_with_its_path_in_the_plan_header(cli, seed_root):
    site = os.path.join(seed_root, "etc/vgpu-fix/profiles")
    os.makedirs(site)
    with open(os.path.join(site, "h100-vgpu.yaml"), "w") as fh:
        fh.write("name: h100-vgpu\ndescription: site copy\n")
    text = cli("plan", "--root", seed_root).stdout.splitlines()
    assert text[1] == (f"profile from site profile {site}/h100-vgpu.yaml, "
                       "which shadows the shipped profile h100-vgpu")
    doc = json.loads(cli("plan", "--root", seed_root, "--json").stdout)
    assert doc["source"] == f"site profile {site}/h100-vgpu.yaml, which shadows the shipped profile h100-vgpu"


def test_a_shipped_profile_alone_gets_no_source_line(cli, seed_root):
    assert not [line for line in cli("plan", "--root", seed_root).stdout.splitlines() if "profile from" in line]
