"""The vgpu_fix module driven by real ansible-playbook runs on seed hosts under temporary roots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixer import core, profiles
from fixer.apply.journal import Journal
from fixer.apply.lock import RunLock
from fixer.demo import snapshot_tree

pytestmark = pytest.mark.slow

DROPIN = "/etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf"
COLLECTION = Path(__file__).resolve().parents[2] / "ansible/ansible_collections/vgpufix/vgpu"
LDCONFIG_OUTPUTS = {"etc/ld.so.cache", "var/cache", "var/cache/ldconfig", "var/cache/ldconfig/aux-cache"}


def apply_task(**args) -> dict:
    return {"name": "vgpu_fix", "vgpufix.vgpu.vgpu_fix": {"root": "{{ vgpu_root }}", "verify": False, **args},
            "register": "vgpu"}


def whole_tree(root: str) -> dict:
    """Everything under root, the journal included: proves a run wrote nothing at all."""
    return snapshot_tree(root, exclude=())


def pending(result: dict) -> list[dict]:
    return [c for c in result["changes"] if c["action"] != "noop"]


def test_first_run_changes_the_host_and_the_second_changes_nothing(ansible):
    root = ansible.host("alpha")
    first = ansible.play([apply_task()])
    assert first.rc == 0, first.output
    assert first.recap["alpha"]["changed"] == 1
    result = first.result()
    assert result["changed"] is True
    assert result["generation"] == 1
    assert result["msg"] == "applied generation 1"
    assert {c["path"] for c in pending(result)} >= {DROPIN, "/opt/vgpu/lib/libcuda.so.1", "/etc/ld.so.preload"}
    assert result["verify"] is None
    assert "diff" not in result  # only under --diff
    after_first = whole_tree(root)

    second = ansible.play([apply_task()])
    assert second.rc == 0, second.output
    assert second.recap["alpha"]["changed"] == 0
    assert second.result()["changed"] is False
    assert second.result()["generation"] is None
    assert pending(second.result()) == []
    assert whole_tree(root) == after_first  # no write, no new generation


def test_check_mode_writes_nothing_and_predicts_exactly_what_the_real_run_does(ansible):
    root = ansible.host("alpha")
    before = whole_tree(root)

    check = ansible.play([apply_task()], "--check")
    assert check.rc == 0, check.output
    assert whole_tree(root) == before
    assert check.recap["alpha"]["changed"] == 1
    predicted = check.result()
    assert predicted["msg"] == f"check mode: {len(pending(predicted))} change(s) would be made"
    assert predicted["generation"] is None

    real = ansible.play([apply_task()])
    assert real.rc == 0, real.output
    assert pending(real.result()) == pending(predicted)
    assert real.result()["changes"] == predicted["changes"]

    after = snapshot_tree(root)
    for change in pending(predicted):
        rel = change["path"].lstrip("/")
        want = change["after"]
        if want["kind"] == "absent":
            assert rel not in after
        elif want["kind"] == "symlink":
            assert after[rel] == ("symlink", want["target"])
        else:
            assert after[rel][0] == "file" and after[rel][-1] == want["sha256"]
    # Nothing else changed but the parents of predicted paths and ldconfig's cache.
    predicted_paths = {c["path"].lstrip("/") for c in pending(predicted)}
    parents = {str(parent) for p in predicted_paths for parent in Path(p).parents}
    visible_before = {k: v for k, v in before.items() if not k.startswith("var/lib/vgpu-fix")}
    touched = {k for k in set(visible_before) | set(after) if visible_before.get(k) != after.get(k)}
    assert touched - predicted_paths - parents - LDCONFIG_OUTPUTS == set()


def test_check_on_a_converged_host_predicts_no_change(ansible):
    root = ansible.host("alpha")
    core.apply(profiles.load("h100-vgpu", root), root, verify=False)
    run = ansible.play([apply_task()], "--check")
    assert run.rc == 0, run.output
    assert run.recap["alpha"]["changed"] == 0
    assert run.result()["msg"] == "host already converged"


def test_diff_mode_shows_the_dropin_diff_with_headers_naming_paths(ansible):
    ansible.host("alpha")
    run = ansible.play([apply_task(vars={"cuda_library": "cuda_v12", "load_timeout": "20m"})], "--check", "--diff")
    assert run.rc == 0, run.output
    assert f"--- before: {DROPIN} (absent)" in run.output
    assert f"+++ after: {DROPIN} (file (" in run.output
    assert '+Environment="OLLAMA_LLM_LIBRARY=cuda_v12"' in run.output
    assert '+Environment="OLLAMA_LOAD_TIMEOUT=20m"' in run.output
    assert "-symlink -> cuda_v12/libggml-cuda.so" in run.output  # the stray top-level backend link
    assert "-/opt/vgpu/lib/libvgpu-cuda.so" in run.output  # the ld.so.preload entry it removes
    headers = [d["before_header"] for d in run.result()["diff"]]
    assert headers == [f"{c['path']} ({describe(c['before'])})" for c in pending(run.result())]


def describe(state: dict) -> str:
    return {"absent": "absent", "symlink": f"symlink -> {state.get('target')}"}.get(
        state["kind"], f"file ({state.get('size')} bytes, mode {state.get('mode')})")


BAD_PROFILE = """\
extends: h100-vgpu
service:
  environment:
    1BAD: x
  colour: blue
"""


@pytest.mark.parametrize(
    "args, expected",
    [
        ({"profile": "{{ playbook_dir }}/bad.yaml"}, ["profile bad is invalid (2 error(s))", "bad.yaml:",
                                                       "unknown key 'colour'", "service.environment"]),
        ({"vars": {"no_such_var": "1"}}, ["the profile has no variable 'no_such_var'"]),
        ({"profile": "no-such-profile"}, ["no profile named 'no-such-profile'", "h100-vgpu"]),
        ({"lock_timeout": "nan"}, ["lock_timeout nan: not a finite number of seconds"]),
        ({"lock_timeout": -1}, ["lock_timeout -1: negative"]),
    ],
    ids=["validation-errors", "unknown-variable", "unknown-profile", "lock-timeout-nan", "lock-timeout-negative"],
)
def test_an_invalid_profile_fails_the_task_with_its_messages_and_changes_nothing(ansible, args, expected):
    root = ansible.host("alpha")
    (ansible.tmp / "bad.yaml").write_text(BAD_PROFILE)
    before = whole_tree(root)
    run = ansible.play([apply_task(**args)])
    assert run.rc == 2
    assert run.recap["alpha"]["failed"] == 1
    result = run.result()
    assert result["failed"] is True and result["changed"] is False
    for fragment in expected:
        assert fragment in result["msg"], result["msg"]
        assert fragment in run.output
    assert whole_tree(root) == before


def test_an_empty_root_is_refused_not_taken_for_the_current_directory(ansible):
    root = ansible.host("alpha")
    before = whole_tree(root)
    run = ansible.play([apply_task(root="")])
    assert run.rc == 2
    result = run.result()
    assert result["failed"] is True and result["changed"] is False
    assert "root '': empty" in result["msg"]
    assert whole_tree(root) == before


def test_a_conflict_fails_without_change_and_force_replaces_the_path(ansible):
    root = ansible.host("alpha")
    Path(root, "opt/vgpu/lib/libcuda.so.1").write_text("a regular file where the shim link belongs\n")
    before = snapshot_tree(root)
    run = ansible.play([{**apply_task(), "ignore_errors": True}, {**apply_task(force=True), "register": "forced"}])
    assert run.rc == 0, run.output
    refused, forced = run.result(), run.result(name="forced")
    assert refused["failed"] is True and refused["changed"] is False
    assert "conflict" in refused["msg"] and "/opt/vgpu/lib/libcuda.so.1" in refused["msg"]
    assert forced["changed"] is True and forced["generation"] == 1
    assert os.readlink(Path(root, "opt/vgpu/lib/libcuda.so.1")) == "libvgpu-cuda.so"
    # The replaced file is journaled: rolling back brings it back byte for byte.
    core.rollback(root)
    assert snapshot_tree(root) == before


def test_a_held_lock_fails_the_task_naming_the_holder(ansible):
    root = ansible.host("alpha")
    journal = Journal(root)
    journal.ensure()
    before = whole_tree(root)
    with RunLock(journal.lock_path):
        run = ansible.play([apply_task()])
    assert run.rc == 2
    result = run.result()
    assert result["changed"] is False
    assert f"holds the lock: pid {os.getpid()}" in result["msg"]
    assert "holder" in result and set(result) - ANSIBLE_KEYS <= _documented_returns("vgpu_fix")
    assert {k: v for k, v in whole_tree(root).items() if not k.endswith("lock")} == \
        {k: v for k, v in before.items() if not k.endswith("lock")}


def test_rollback_through_the_module_restores_the_tree_and_is_idempotent(ansible):
    root = ansible.host("alpha")
    before = snapshot_tree(root)
    rollback = {"state": "rolled_back"}
    run = ansible.play(
        [
            apply_task(),
            {**apply_task(**rollback), "register": "preview", "check_mode": True},
            {**apply_task(**rollback), "register": "back"},
            {**apply_task(**rollback), "register": "again"},
            {**apply_task(state="rolled_back", rollback_to=1), "register": "again_to"},
        ],
        "--diff",
    )
    assert run.rc == 0, run.output
    applied, preview, back, again = (run.result(name=n) for n in ("vgpu", "preview", "back", "again"))
    assert applied["generation"] == 1
    assert preview["changed"] is True and preview["msg"] == "check mode: would roll back generation(s) 1"
    assert f"{DROPIN} (absent)" in [d["after_header"] for d in preview["diff"]]
    assert back["changed"] is True and back["generation"] == 1
    assert DROPIN in back["restored"]
    assert again["changed"] is False and again["msg"] == "nothing to roll back: no applied generation"
    assert run.result(name="again_to")["msg"] == ("nothing to roll back: generation 1 and every later one are "
                                                   "already rolled back")  # the CLI's lines, both exit 0 there
    assert snapshot_tree(root) == before
    assert run.recap["alpha"]["changed"] == 3  # apply, the preview, the rollback


def test_rollback_to_an_unknown_generation_fails(ansible):
    root = ansible.host("alpha")
    core.apply(profiles.load("h100-vgpu", root), root, verify=False)
    run = ansible.play([apply_task(state="rolled_back", rollback_to=7)])
    assert run.rc == 2
    assert "generation 7 does not exist" in run.result()["msg"]


def test_a_drifted_rollback_is_refused_with_the_cli_s_sentence_in_check_mode_and_for_real(ansible, cli):
    """One drift refusal (fixer.apply.rollback_plan) for both faces; only the way past it differs."""
    root = ansible.host("alpha")
    core.apply(profiles.load("h100-vgpu", root), root, verify=False)
    with open(f"{root}{DROPIN}", "a") as fh:
        fh.write("# hand edit\n")
    said = "managed paths changed since that apply; rollback would discard those edits"
    run = ansible.play([{**apply_task(state="rolled_back"), "register": "preview", "check_mode": True, "ignore_errors": True},
                        {**apply_task(state="rolled_back"), "ignore_errors": True}])
    for name in ("preview", "vgpu"):
        assert run.result(name=name)["failed"] and f"{said} (force: true rolls back anyway)" in run.result(name=name)["msg"]
    refused = cli("rollback", "--root", root)
    assert refused.returncode == 5 and f"{said} (--force rolls back anyway)" in refused.stderr


def test_rollback_to_the_first_of_two_applies_succeeds_exactly_as_the_cli_does(ansible, cli):
    """A path generation 2 changed again is owed generation 2's state, so it is not drift for --to 1."""
    module_root, cli_root = ansible.host("alpha"), ansible.host("beta")
    before = snapshot_tree(module_root)
    assert before == snapshot_tree(cli_root)
    second = {"vars": {"cuda_library": "cuda_v13"}}
    run = ansible.play([apply_task(), {**apply_task(**second), "register": "second"},
                        {**apply_task(state="rolled_back", rollback_to=1), "register": "back"}], "--limit", "alpha")
    assert run.rc == 0, run.output
    assert run.result(name="second")["generation"] == 2
    back = run.result(name="back")
    assert back["changed"] is True and back["generation"] == 1

    for args in ([], ["--set", "cuda_library=cuda_v13"]):
        assert cli("apply", "--root", cli_root, "--no-verify", *args).returncode == 0
    by_cli = cli("rollback", "--root", cli_root, "--to", "1")
    assert by_cli.returncode == 0, by_cli.stderr
    assert snapshot_tree(module_root) == snapshot_tree(cli_root) == before


def test_two_hosts_in_one_inventory_converge_independently(ansible):
    alpha = ansible.host("alpha", cuda_library="cuda_v12")
    beta = ansible.host("beta", cuda_library="cuda_v13")
    core.apply(profiles.load("h100-vgpu", beta, {"cuda_library": "cuda_v13"}), beta, verify=False)  # beta is converged
    beta_before = whole_tree(beta)
    task = apply_task(vars={"cuda_library": "{{ cuda_library }}"})

    run = ansible.play([task])
    assert run.rc == 0, run.output
    assert run.recap["alpha"]["changed"] == 1 and run.recap["beta"]["changed"] == 0
    assert run.result("alpha")["generation"] == 1 and run.result("beta")["generation"] is None
    assert "OLLAMA_LLM_LIBRARY=cuda_v12" in Path(alpha, DROPIN.lstrip("/")).read_text()
    assert whole_tree(beta) == beta_before

    again = ansible.play([task])
    assert again.rc == 0, again.output
    assert again.recap["alpha"]["changed"] == 0 and again.recap["beta"]["changed"] == 0


def test_a_target_python_without_vgpu_fix_fails_saying_how_to_install_it(ansible, tmp_path):
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    ansible.host("alpha", ansible_python_interpreter=str(bare / "bin" / "python"))
    ansible.env.pop("PYTHONPATH")
    run = ansible.play([apply_task()])
    assert run.rc == 2
    msg = run.result()["msg"]
    assert "Failed to import the required Python library (vgpu-fix)" in msg
    assert f"{bare}/bin/python -m pip install vgpu_fix-<version>-py3-none-any.whl" in msg
    assert "vgpufix.vgpu.deploy role" in msg


def test_a_failed_verify_fails_the_task_and_reports_the_rollback(ansible):
    pytest.importorskip("fixer.verify.layers")
    root = ansible.host("alpha")  # the seed's libraries are placeholders: the backend cannot load
    before = snapshot_tree(root)
    run = ansible.play([apply_task(verify=True, level="files")])  # a copy: the static level at most
    assert run.rc == 2
    result = run.result()
    assert result["changed"] is False
    assert result["msg"].startswith("verify failed after apply; generation 1 was rolled back")
    assert result["generation"] == 1
    assert result["verify"]["ok"] is False and result["verify"]["outcome"] == "failed"
    assert result["proof"]["asked"] == "files" and result["proof"]["reached"] is None
    reports = json.dumps([result["verify"], result["verify_after_rollback"]])
    assert "checks" not in result["verify"] and "checks" not in result["verify_after_rollback"]
    assert len(reports) < 4000  # verdicts only without full_reports
    assert snapshot_tree(root) == before


def test_an_apply_to_a_copy_without_probes_fails_before_any_change(ansible):
    pytest.importorskip("fixer.verify.layers")
    root = ansible.host("alpha")
    before = whole_tree(root)
    run = ansible.play([apply_task(verify=True)])
    assert run.rc == 2
    result = run.result()
    assert result["msg"].startswith(f"refusing to apply to {root}: verify could reach only the files level")
    assert result["exit_code"] == 12 and result["changed"] is False
    assert whole_tree(root) == before


def test_state_verified_fails_when_the_backend_does_not_load_and_changes_nothing(ansible):
    pytest.importorskip("fixer.verify.layers")
    root = ansible.host("alpha")
    before = whole_tree(root)
    run = ansible.play([apply_task(state="verified")])
    assert run.rc == 2
    result = run.result()
    assert result["msg"].startswith("FAILED: cuda_v12/libggml-cuda.so does not load: ")
    assert result["msg"].endswith("level reached: none (asked: modeled)")
    assert result["verify"]["ok"] is False and result["changed"] is False
    assert whole_tree(root) == before


def test_the_module_never_executes_an_untrusted_roots_files_unless_probe_is_true(ansible):
    ansible.host("alpha")
    run = ansible.play([apply_task(state="verified", full_reports=True)])
    report = run.result()["verify"]
    assert {c["name"]: c["status"] for c in report["checks"]}["load"] == "skip"
    modeled = next(r for r in report["not_reached"] if r["level"] == "modeled")
    assert modeled["why"] == "load not run: a root other than / is untrusted: its files are executed only with --probe"
    assert report["ok"] is False
    probed = ansible.play([apply_task(state="verified", probe=True, full_reports=True)]).result()["verify"]
    assert not any(c["status"] == "skip" for c in probed["checks"])
    assert {c["name"] for c in probed["checks"]} >= {"load", "runner"}


def test_a_rollback_that_fails_part_way_fails_the_task_as_changed(ansible):
    root = ansible.host("alpha")
    core.apply(profiles.load("h100-vgpu", root), root, verify=False)
    lib = os.path.join(root, "usr/local/lib/ollama")
    os.rename(lib, lib + ".moved")
    os.symlink("ollama.moved", lib)  # every write under it is refused (never followed)
    run = ansible.play([apply_task(state="rolled_back", force=True)])
    assert run.rc == 2, run.output
    result = run.result()
    assert result["changed"] is True  # the host may be half-changed: never reported as untouched
    assert result["exit_code"] == 7 and result["error"] == "RollbackFailed"
    assert result["msg"].startswith("rollback of generation 1 failed: ")
    assert "/usr/local/lib/ollama/libggml-cuda.so" in result["not_restored"]
    assert set(result) - ANSIBLE_KEYS <= _documented_returns("vgpu_fix")


ANSIBLE_KEYS = {"invocation", "failed", "changed", "msg", "warnings", "deprecations", "exception", "_ansible_no_log",
                "skipped", "diff"}  # Ansible's own result keys (changed, msg, diff are documented too)


def _documented_returns(module: str) -> set[str]:
    import ast

    import yaml

    source = (COLLECTION / "plugins/modules" / f"{module}.py").read_text()
    [text] = [node.value.value for node in ast.parse(source).body
              if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "RETURN"]
    return set(yaml.safe_load(text))


def test_every_key_the_module_returns_is_documented(ansible):
    """Each state, check mode, diff, and the failures that carry their own keys (verify then rollback,
    a failed rollback, a held lock): every top-level key returned is in RETURN."""
    ansible.host("alpha")
    ok = {"ignore_errors": True}
    tasks = [{**apply_task(), "register": "check", "check_mode": True},
             {**apply_task(verify=True, level="files"), "register": "verify_failed", **ok},
             {**apply_task(), "register": "applied"},
             {**apply_task(state="verified"), "register": "verified", **ok},
             {**apply_task(state="rolled_back"), "register": "rolled_back"},
             {**apply_task(state="rolled_back"), "register": "nothing"},
             {**apply_task(vars={"no_such_var": "x"}), "register": "invalid", **ok}]
    run = ansible.play(tasks, "--diff")
    results = run.results["alpha"]
    assert set(results) >= {t["register"] for t in tasks}, run.output
    assert "verify_after_rollback" in results["verify_failed"] and "exit_code" in results["invalid"]
    returned = {key for result in results.values() for key in result}
    assert returned - ANSIBLE_KEYS - _documented_returns("vgpu_fix") == set()
