"""The vgpufix.vgpu.deploy role: install vgpu-fix from a wheel into a virtualenv, apply, restart once.

Offline: the wheel is built from this checkout with `pip wheel --no-deps --no-build-isolation`, and
pip installs it with `--no-index --no-deps`; the dependencies (typer, pydantic, ...) come from the
environment running the tests, seen through a view that leaves vgpu-fix itself out.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from fixer.demo import snapshot_tree

pytestmark = pytest.mark.slow

HIDDEN = ("fixer", "vgpu_fix", "__editable__.vgpu_fix", "__editable___vgpu_fix")
HANDLER = "RUNNING HANDLER [vgpufix.vgpu.deploy : Restart ollama]"


@pytest.fixture
def virtualenv(tmp_path) -> Path:
    """An empty virtualenv that sees this environment's packages, except vgpu-fix itself."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    view = tmp_path / "parent-packages"
    view.mkdir()
    for base in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]):
        for entry in Path(base).iterdir():
            if not entry.name.startswith(HIDDEN) and not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "parent-packages.pth").write_text(f"{view}\n")
    # The console script ensurepip would write (ensurepip itself takes seconds): pip from the view.
    pip = venv / "bin" / "pip3"
    pip.write_text(f"#!{venv}/bin/python\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n")
    pip.chmod(0o755)
    return venv


def test_the_role_installs_the_wheel_applies_and_restarts_only_when_something_changed(ansible, wheel, virtualenv):
    root = ansible.host("alpha")
    ansible.env.pop("PYTHONPATH")  # the module must import the vgpu-fix the role installed
    role_vars = {
        "deploy_wheel": str(wheel),
        "deploy_wheel_dir": str(ansible.tmp / "wheels"),
        "deploy_virtualenv": str(virtualenv),
        "deploy_pip_extra_args": "--no-index --no-deps",
        "deploy_root": "{{ vgpu_root }}",
        "deploy_vars": {"cuda_library": "cuda_v12"},
        "deploy_verify": False,
    }
    roles = [{"role": "vgpufix.vgpu.deploy", "vars": role_vars}]

    first = ansible.play([], play_vars={}, roles=roles)
    assert first.rc == 0, first.output
    result = first.result(name="deploy_result")
    assert result["changed"] is True and result["generation"] == 1
    assert result["vgpu_fix_path"].startswith(str(virtualenv))
    assert result["invocation"]["module_args"]["restart"] is False  # the handler restarts, once
    assert HANDLER in first.output
    converged = snapshot_tree(root)

    second = ansible.play([], play_vars={}, roles=roles)
    assert second.rc == 0, second.output
    assert second.recap["alpha"]["changed"] == 0, second.output
    assert HANDLER not in second.output
    assert snapshot_tree(root) == converged


@pytest.mark.parametrize(
    "role_vars, expected",
    [
        ({}, "no vgpu-fix to install: set deploy_wheel to the wheel you ship"),
        ({"deploy_install_from_index": True}, "deploy_install_from_index needs deploy_package"),
        ({"deploy_wheel": "WHEEL", "deploy_install_from_index": True, "deploy_package": "vgpu-fix"},
         "give either deploy_wheel or deploy_install_from_index, not both"),
    ],
    ids=["neither-wheel-nor-index", "index-without-package", "wheel-and-index"],
)
def test_the_role_never_installs_by_name_from_an_index_unless_asked_and_says_what_to_set(
        ansible, wheel, virtualenv, role_vars, expected):
    root = ansible.host("alpha")
    before = snapshot_tree(root)
    role_vars = {k: str(wheel) if v == "WHEEL" else v for k, v in role_vars.items()}
    roles = [{"role": "vgpufix.vgpu.deploy",
              "vars": {"deploy_virtualenv": str(virtualenv), "deploy_root": "{{ vgpu_root }}", **role_vars}}]
    run = ansible.play([], play_vars={}, roles=roles)
    assert run.rc == 2, run.output
    assert expected in run.output
    assert not list((virtualenv / "bin").glob("vgpu-fix")), "something was installed"
    assert snapshot_tree(root) == before


def test_an_index_install_is_an_explicit_opt_in_with_a_package_spec(ansible, wheel, virtualenv):
    root = ansible.host("alpha")
    ansible.env.pop("PYTHONPATH")
    role_vars = {
        "deploy_install_from_index": True,
        "deploy_package": "vgpu-fix",
        # the operator's own index: here a directory holding the wheel
        "deploy_pip_extra_args": f"--no-index --no-deps --find-links {wheel.parent}",
        "deploy_virtualenv": str(virtualenv),
        "deploy_root": "{{ vgpu_root }}",
        "deploy_vars": {"cuda_library": "cuda_v12"},
        "deploy_verify": False,
    }
    run = ansible.play([], play_vars={}, roles=[{"role": "vgpufix.vgpu.deploy", "vars": role_vars}])
    assert run.rc == 0, run.output
    result = run.result(name="deploy_result")
    assert result["vgpu_fix_path"].startswith(str(virtualenv))
    assert result["changed"] is True and root


def test_the_role_ships_a_profile_from_the_controller_and_gathers_the_status_fact(ansible, tmp_path):
    root = ansible.host("alpha")
    source = tmp_path / "lab.yaml"
    source.write_text("name: lab\nextends: h100-vgpu\nservice:\n  environment:\n    OLLAMA_LOAD_TIMEOUT: 9m\n")
    role_vars = {"deploy_install": False, "deploy_profile_src": str(source), "deploy_root": "{{ vgpu_root }}",
                 "deploy_verify": False, "deploy_gather": True, "deploy_restart": False}
    run = ansible.play([{"name": "fact", "ansible.builtin.set_fact": {"seen": "{{ vgpu_fix }}"}, "register": "fact"}],
                       roles=[{"role": "vgpufix.vgpu.deploy", "vars": role_vars}])
    assert run.rc == 0, run.output
    assert run.result(name="deploy_result")["profile"] == "lab"
    assert "OLLAMA_LOAD_TIMEOUT=9m" in open(f"{root}/etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf").read()
    seen = run.result(name="fact")["ansible_facts"]["seen"]
    assert seen["profile"] == "lab" and seen["applied"]["generation"] == 1 and seen["drift"]["pending"] == 0


@pytest.mark.parametrize("first_run", [True, False], ids=["no-virtualenv-yet", "virtualenv-without-vgpu-fix"])
def test_a_dry_run_before_the_first_install_reports_what_it_would_do(ansible, wheel, virtualenv, tmp_path, first_run):
    """`--check` on a host without vgpu-fix: the install steps report they would run, the apply says it
    cannot plan before the install and what a real run does; nothing fails and nothing is written."""
    root = ansible.host("alpha")
    ansible.env.pop("PYTHONPATH")  # the module must not see this checkout's fixer
    before = snapshot_tree(root)
    venv = tmp_path / "not-yet" if first_run else virtualenv
    role_vars = {"deploy_wheel": str(wheel), "deploy_wheel_dir": str(tmp_path / "wheels"),
                 "deploy_virtualenv": str(venv), "deploy_pip_extra_args": "--no-index --no-deps",
                 "deploy_root": "{{ vgpu_root }}", "deploy_profile": "h100-vgpu-cuda13", "deploy_gather": True}
    run = ansible.play([], "--check", roles=[{"role": "vgpufix.vgpu.deploy", "vars": role_vars}])
    assert run.rc == 0, run.output
    assert run.recap["alpha"]["failed"] == 0 and run.recap["alpha"]["changed"] >= 2  # copy and install would run
    assert (f"check mode: vgpu-fix is not installed for {venv}/bin/python yet, so nothing can be planned here; "
            "a real run installs it, then makes the host applied with profile h100-vgpu-cuda13") in run.output
    assert "deploy_result" not in run.results.get("alpha", {})
    assert snapshot_tree(root) == before and not (tmp_path / "wheels").exists()
    assert not list((virtualenv / "bin").glob("vgpu-fix"))


def test_a_dry_run_where_vgpu_fix_is_installed_plans_as_usual(ansible):
    ansible.host("alpha")  # this checkout's fixer on PYTHONPATH stands for an installed vgpu-fix
    role_vars = {"deploy_install": False, "deploy_root": "{{ vgpu_root }}"}
    run = ansible.play([], "--check", roles=[{"role": "vgpufix.vgpu.deploy", "vars": role_vars}])
    assert run.rc == 0, run.output
    assert run.result(name="deploy_result")["msg"].startswith("check mode: ")
    assert "is not installed for" not in run.output


@pytest.fixture(scope="session")
def wheelhouse(wheel) -> Path:
    """Wheels of vgpu-fix's runtime dependencies for this Python, from the package index through pip
    (scripts/build_wheelhouse.py, what `make wheelhouse` runs), cached under .cache/wheelhouse/."""
    import hashlib

    from scripts.build_wheelhouse import REPO, add_dependencies

    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()[:12]
    house = REPO / ".cache" / "wheelhouse" / key / "wheels"
    complete = house.parent / "complete"
    if not complete.exists():
        house.mkdir(parents=True, exist_ok=True)
        try:
            add_dependencies(wheel, house)
        except RuntimeError as exc:
            pytest.skip(f"cannot fetch vgpu-fix's dependencies from the package index: {exc}")
        for own in house.glob("vgpu_fix-*.whl"):  # the cache holds the dependencies only
            own.unlink()
        complete.write_text("")
    return house


def test_the_role_installs_from_a_wheelhouse_into_an_empty_virtualenv_without_an_index(
        ansible, wheel, wheelhouse, tmp_path):
    """pip runs with --no-index: every dependency comes from the copied wheelhouse, none from this machine."""
    root = ansible.host("alpha")
    ansible.env.pop("PYTHONPATH")
    for name in [k for k in ansible.env if k.startswith("PIP_")]:  # no find-links or index of this machine
        del ansible.env[name]
    venv = tmp_path / "venv"  # created by the role, with nothing but pip in it
    role_vars = {"deploy_wheel": str(wheel), "deploy_wheelhouse": str(wheelhouse),
                 "deploy_wheel_dir": str(tmp_path / "wheels"), "deploy_virtualenv": str(venv),
                 "deploy_virtualenv_command": f"{sys.executable} -m venv", "deploy_root": "{{ vgpu_root }}",
                 "deploy_verify": False}
    run = ansible.play([], roles=[{"role": "vgpufix.vgpu.deploy", "vars": role_vars}])
    assert run.rc == 0, run.output
    result = run.result(name="deploy_result")
    assert result["changed"] is True and result["vgpu_fix_path"].startswith(str(venv)) and root
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True).stdout
    assert "typer==" in installed and "pydantic==" in installed
    assert sorted(p.name for p in (tmp_path / "wheels").iterdir()) == sorted(
        [wheel.name, *(p.name for p in wheelhouse.glob("*.whl"))])
