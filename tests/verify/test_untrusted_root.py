"""A root other than / is untrusted data: verify and apply never execute its files unless the
operator opts in with --probe, and then only as an unprivileged user (never uid 0) in new user, PID,
network and mount namespaces where every mount is read-only.

The proof is an image with a planted library (tests/native/planted.c, built by gcc) preloaded by its
unit: its constructor reports the uid it runs as and tries to write a file outside the root, into a
world-writable directory, so that only the sandbox (not file permissions) can stop it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from tests.native import layout
from tests.verify.test_verify import write_unit

PLANTED = "/opt/vgpu/lib/libplanted.so"


@pytest.fixture
def outside():
    folder = tempfile.mkdtemp(prefix="vgpu-fix-outside-", dir="/tmp")
    os.chmod(folder, 0o777)
    yield os.path.join(folder, "owned")
    shutil.rmtree(folder)


@pytest.fixture
def image(make_host, native, outside):
    root = make_host()
    layout.place(root, PLANTED, native["planted"])
    env = {**layout.use_library_path(root), "LD_PRELOAD": PLANTED, "VGPU_PLANTED_TARGET": outside}
    write_unit(root, env)
    unit = root / "etc/systemd/system/ollama.service"
    unit.write_text(unit.read_text().replace("User=root", "User=no-such-user-here"))
    return str(root)


def test_without_opt_in_verify_runs_nothing_from_the_image_and_says_what_it_left_out(image, outside, cli):
    result = cli("verify", "--root", image, "--profile", "h100-vgpu", "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 12  # nothing failed, modeled was asked and not reached
    assert "planted:" not in result.stdout + result.stderr
    assert not os.path.exists(outside)
    report = doc["verify"]
    assert report["ok"] is False and report["outcome"] == "not_proven"
    assert (report["asked"], report["reached"]) == ("modeled", "files")
    missing = {r["level"]: r for r in report["not_reached"]}
    assert missing["modeled"] == {
        "level": "modeled", "asked": True, "flag": "--probe",
        "why": "load not run: a root other than / is untrusted: its files are executed only with --probe"}
    assert missing["service"]["asked"] is False and missing["service"]["why"] == "not asked"
    assert {c["name"]: c["status"] for c in report["checks"]}["load"] == "skip"
    text = cli("verify", "--root", image, "--profile", "h100-vgpu").stdout
    assert "[skip] load: not run: a root other than / is untrusted" in text
    assert "verdict: NOT PROVEN: level reached: files (asked: modeled); modeled: load not run" in text
    assert "[--probe]" in text


def test_apply_verifying_without_probes_is_refused_before_any_change(image, outside, cli):
    result = cli("apply", "--root", image, "--profile", "h100-vgpu", "--no-restart", "--force", "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 12, result.stdout + result.stderr
    assert not os.path.exists(outside) and "planted:" not in result.stdout + result.stderr
    assert doc["changed"] is False and doc["failed"] is True and doc["exit_code"] == 12
    assert doc["msg"].startswith(f"refusing to apply to {image}: verify could reach only the files level")
    assert not os.path.exists(os.path.join(image, "var/lib/vgpu-fix"))


def test_apply_asking_only_for_the_files_level_keeps_its_changes_and_says_so(image, outside, cli):
    result = cli("apply", "--root", image, "--profile", "h100-vgpu", "--no-restart", "--force", "--json",
                 "--level", "files")
    doc = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert doc["proof"]["asked"] == "files" and doc["proof"]["reached"] == "files"
    assert doc["proof"]["outcome"] == "passed" and "passed at files" in doc["msg"]
    assert "nothing was executed" in doc["msg"] and not os.path.exists(outside)


@pytest.mark.root
def test_with_opt_in_the_image_runs_as_nobody_and_cannot_write_outside(namespaces, image, outside, cli):
    result = cli("verify", "--root", image, "--profile", "h100-vgpu", "--probe", "--json")
    output = result.stdout + result.stderr
    assert "planted: uid=65534 write=Read-only file system" in output, output
    assert "planted: uid=0" not in output
    assert not os.path.exists(outside)
    load = {c["name"]: c for c in json.loads(result.stdout)["verify"]["checks"]}["load"]
    assert load["details"]["mode"] == "isolated"
    assert "not honoured: User=no-such-user-here does not exist on this machine; ran as nobody" in load["evidence"]


def test_a_probe_of_an_untrusted_root_is_never_started_without_an_unprivileged_user():
    from fixer.probe import placement as sandbox

    placement = sandbox.Placement("/some/image", "isolated", untrusted=True)
    with pytest.raises(ValueError, match="never runs without an unprivileged user"):
        sandbox.start(placement, ["/usr/local/bin/ollama"], {}, user=None)
    assert sandbox.resolve_user("root", untrusted=True)[0]["uid"] != 0
    assert sandbox.resolve_user(None, untrusted=True)[0]["uid"] != 0
