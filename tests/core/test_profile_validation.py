"""Profiles: every kind of bad input is rejected with its YAML location; good ones resolve."""

from __future__ import annotations

import textwrap

import pytest

from fixer import profiles
from fixer.errors import ProfileError

BASE = """\
name: t
symlinks:
  - path: /opt/vgpu/lib/libcuda.so.1
    target: libvgpu-cuda.so
"""

# (case id, YAML text, a fragment the error must contain, the line:column it must name)
BAD = [
    ("unknown-top-key", "name: t\nsymlnks: []\n", "unknown key 'symlnks'", ":2:"),
    ("unknown-nested-key", "name: t\nservice:\n  envirnoment: {}\n", "unknown key 'envirnoment'", ":3:"),
    ("relative-symlink-path", "name: t\nsymlinks:\n  - path: opt/x\n    target: y\n", "absolute path", ":3:"),
    ("dotdot-path", "name: t\nsymlinks:\n  - path: /opt/../etc/x\n    target: y\n", "'..'", ":3:"),
    ("target-escapes-root", "name: t\nsymlinks:\n  - path: /opt/x\n    target: ../../../etc/shadow\n", "climbs out", ":3:"),
    ("present-symlink-without-target", "name: t\nsymlinks:\n  - path: /opt/x\n", "needs a target", ":3:"),
    ("duplicate-paths", BASE + "  - path: /opt/vgpu/lib/libcuda.so.1\n    target: other.so\n", "managed twice", ":5:"),
    ("duplicate-preload", "name: t\npreload: [/a.so, /a.so]\n", "twice", ":2:"),
    ("relative-preload", "name: t\npreload: [libvgpu-cuda.so]\n", "absolute path", ":2:"),
    ("colon-in-library-path", "name: t\nlibrary_path: ['/a:/b']\n", "separate entries", ":2:"),
    ("bad-env-name", "name: t\nservice:\n  environment:\n    1BAD: x\n", "not a valid environment variable", ":4:"),
    ("env-name-with-dash", "name: t\nservice:\n  environment:\n    A-B: x\n", "not a valid environment variable", ":4:"),
    ("env-newline", 'name: t\nservice:\n  environment:\n    A: "x\\ny"\n', "control character", ":4:"),
    ("env-nul", 'name: t\nservice:\n  environment:\n    A: "x\\0y"\n', "control character", ":4:"),
    ("env-too-long", "name: t\nservice:\n  environment:\n    A: " + "x" * 40000 + "\n", "limit", ":4:"),
    ("ld-preload-via-environment", "name: t\nservice:\n  environment:\n    LD_PRELOAD: /a.so\n", "preload", ":4:"),
    ("set-and-unset", "name: t\nservice:\n  environment:\n    A: x\n  unset: [A]\n", "both set and unset", ":2:"),
    ("unset-bad-name", "name: t\nservice:\n  unset: ['A B']\n", "not a valid environment variable", ":3:"),
    ("directive-execstart", "name: t\nservice:\n  directives:\n    ExecStart: /bin/wrapper\n", "wrapper", ":4:"),
    ("directive-unknown", "name: t\nservice:\n  directives:\n    Frobnicate: yes\n", "not a [Service] setting", ":4:"),
    ("directive-newline", 'name: t\nservice:\n  directives:\n    LimitMEMLOCK: "a\\nb"\n', "control character", ":4:"),
    ("dropin-not-conf", "name: t\nservice:\n  dropin: vgpu.txt\n", "must end in .conf", ":3:"),
    ("dropin-with-slash", "name: t\nservice:\n  dropin: ../x.conf\n", "plain file name", ":3:"),
    ("unit-not-service", "name: t\nservice:\n  unit: ollama.socket\n", "pattern", ":3:"),
    ("ld-so-conf-not-conf", "name: t\nld_so_conf:\n  file: vgpu\n", "must end in .conf", ":3:"),
    ("ld-so-conf-relative-entry", "name: t\nld_so_conf:\n  entries: [opt/lib]\n", "absolute path", ":3:"),
    ("file-without-content", "name: t\nfiles:\n  - path: /etc/x\n", "needs `content`", ":3:"),
    ("file-decimal-mode", "name: t\nfiles:\n  - path: /etc/x\n    content: y\n    mode: 644\n", "quoted octal", ":5:"),
    ("file-bad-mode", "name: t\nfiles:\n  - path: /etc/x\n    content: y\n    mode: '0999'\n", "pattern", ":5:"),
    ("absent-with-content", "name: t\nfiles:\n  - path: /etc/x\n    state: absent\n    content: y\n", "no `content`", ":3:"),
    ("wrong-type-list", "name: t\nsymlinks: {path: /a}\n", "valid list", ":2:"),
    ("wrong-type-min-devices", "name: t\nverify:\n  min_devices: many\n", "valid integer", ":3:"),
    ("negative-min-devices", "name: t\nverify:\n  min_devices: -1\n", "greater than or equal", ":3:"),
    ("undefined-var", "name: t\nsymlinks:\n  - path: ${nowhere}/x\n    target: y\n", "undefined variable ${nowhere}", ":3:"),
    ("var-cycle", "name: t\nvars:\n  a: ${b}\n  b: ${a}\nsymlinks: []\n", "variable cycle", ":4:"),
    ("malformed-yaml", "name: t\nsymlinks: [\n", "malformed YAML", ":3:"),
    ("not-a-mapping", "- a\n- b\n", "must be a mapping", ":1:"),
    ("bad-name", "name: 'has space'\n", "pattern", ":1:"),
]


def write(tmp_path, text: str, name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, fragment, position", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_profile_names_the_problem_and_where(tmp_path, text, fragment, position):
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        profiles.load(path, str(tmp_path))
    lines = "\n".join(caught.value.lines())
    assert fragment in lines
    assert f"{path}{position}" in lines


def test_every_error_in_a_profile_is_reported_at_once(tmp_path):
    path = write(tmp_path, "name: t\npreload: [rel.so]\nsymlinks:\n  - path: rel\n    target: x\n")
    with pytest.raises(ProfileError) as caught:
        profiles.load(path, str(tmp_path))
    assert len(caught.value.details) == 2


def test_extends_cycle_is_rejected(tmp_path):
    write(tmp_path, "extends: b\nname: a\n", "a.yaml")
    write(tmp_path, "extends: a\nname: b\n", "b.yaml")
    with pytest.raises(ProfileError, match="`extends` cycle: a -> b -> a"):
        profiles.load(str(tmp_path / "a.yaml"), str(tmp_path))


def test_extends_merges_deeply_and_the_child_wins(tmp_path):
    write(tmp_path, "name: base\nvars: {lib: cuda_v12}\nservice:\n  environment: {A: '1', B: '${lib}'}\n", "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nname: child\nvars: {lib: cuda_v13}\nservice:\n  environment: {A: '2'}\n",
                  "child.yaml")
    prof = profiles.load(child, str(tmp_path))
    assert prof.name == "child"
    assert prof.service.environment == {"A": "2", "B": "cuda_v13"}


def test_set_overrides_a_variable_everywhere_it_is_used():
    prof = profiles.load("h100-vgpu", "/nonexistent-root", {"shim_dir": "/srv/shims"})
    assert prof.symlinks[0].path == "/srv/shims/libcuda.so.1"
    assert prof.library_path[0] == "/srv/shims"
    assert prof.symlinks[2].target == "/srv/shims/libvgpu-cuda.so"


def test_set_of_an_unknown_variable_is_an_error():
    with pytest.raises(ProfileError, match="no variable 'shimdir'"):
        profiles.load("h100-vgpu", "/nonexistent-root", {"shimdir": "/x"})


def test_set_needs_name_equals_value():
    with pytest.raises(ProfileError, match="expected NAME=VALUE"):
        profiles.parse_overrides(["novalue"])


def test_dollar_dollar_brace_is_a_literal(tmp_path):
    path = write(tmp_path, "name: t\nservice:\n  environment:\n    A: 'cost $${HOME}'\n")
    assert profiles.load(path, str(tmp_path)).service.environment["A"] == "cost ${HOME}"


def test_site_profiles_under_the_root_are_found_by_name(tmp_path):
    site = tmp_path / "etc/vgpu-fix/profiles"
    site.mkdir(parents=True)
    (site / "lab.yaml").write_text("extends: h100-vgpu\nname: lab\nvars: {shim_dir: /lab/lib}\n")
    prof = profiles.load("lab", str(tmp_path))
    assert prof.symlinks[0].path == "/lab/lib/libcuda.so.1"
    assert ("lab", "site", str(site / "lab.yaml")) in profiles.list_profiles(str(tmp_path))


def test_unknown_profile_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ProfileError, match="known: .*h100-vgpu"):
        profiles.load("h100", str(tmp_path))


SHIPPED = ["h100-vgpu", "h100-vgpu-preload", "h100-vgpu-cuda13", "passthrough-gpu"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load(name, tmp_path):
    assert profiles.load(name, str(tmp_path)).name == name


def test_h100_vgpu_encodes_the_configuration_proven_on_real_hosts(seed_root):
    prof = profiles.load("h100-vgpu", seed_root)
    assert prof.preload == []
    assert prof.service.environment["OLLAMA_LLM_LIBRARY"] == "cuda_v12"
    assert {"OLLAMA_NUM_GPU", "OLLAMA_LIBRARY_PATH"} <= set(prof.service.unset)
    links = {s.path: (s.state, s.target) for s in prof.symlinks}
    assert links["/opt/vgpu/lib/libcuda.so.1"] == ("present", "libvgpu-cuda.so")
    assert links["/opt/vgpu/lib/libnvidia-ml.so.1"] == ("present", "libvgpu-nvml.so")
    assert links["/usr/local/lib/ollama/libggml-cuda.so"][0] == "absent"
    assert not any("libcudart" in s.path and s.state == "present" for s in prof.symlinks)
    assert prof.service.directives["LimitMEMLOCK"] == "infinity"
    assert prof.service.dropin > "override.conf"


def test_preload_profile_preloads_the_driver_shim_only(tmp_path):
    prof = profiles.load("h100-vgpu-preload", str(tmp_path))
    assert prof.preload == ["/opt/vgpu/lib/libvgpu-cuda.so"]
    assert prof.service.environment["OLLAMA_LLM_LIBRARY"] == "cuda_v12"


def test_schema_and_reference_docs_are_current():
    import json
    from pathlib import Path

    from fixer.model.profile import Profile
    from scripts.gen_profile_docs import render

    docs = Path(__file__).parents[2] / "docs"
    hint = "run `python scripts/gen_profile_docs.py`"
    assert json.loads((docs / "profile.schema.json").read_text()) == Profile.model_json_schema(), hint
    current = (docs / "profiles.md").read_text()
    assert render(current) == current, hint


def test_yaml_dedent_helper_is_not_needed_for_locations(tmp_path):
    text = textwrap.dedent(
        """\
        name: t
        service:
          environment:
            GOOD: x
            "BAD NAME": y
        """
    )
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        profiles.load(path, str(tmp_path))
    assert f"{path}:5:" in "\n".join(caught.value.lines())
