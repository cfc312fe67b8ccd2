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
    report = json.loads(result.stdout)["verify"]
    assert report["user"] == "no-such-user-here" and report["probe_user"] == "nobody"


@pytest.mark.root
def test_the_images_user_names_a_local_account_that_is_reported_never_adopted(namespaces, image, outside, cli):
    unit = os.path.join(image, "etc/systemd/system/ollama.service")
    with open(unit) as fh:
        text = fh.read().replace("User=no-such-user-here", "User=daemon")  # uid 1 here: a real local account
    with open(unit, "w") as fh:
        fh.write(text)
    result = cli("verify", "--root", image, "--profile", "h100-vgpu", "--probe", "--json")
    output = result.stdout + result.stderr
    assert "planted: uid=65534 " in output and "planted: uid=1 " not in output, output
    report = json.loads(result.stdout)["verify"]
    assert report["user"] == "daemon" and report["probe_user"] == "nobody"
    text = cli("verify", "--root", image, "--profile", "h100-vgpu", "--probe").stdout
    assert "the image's User=daemon, not adopted; probes as nobody" in text.splitlines()[0]
    chosen = cli("verify", "--root", image, "--profile", "h100-vgpu", "--probe", "--probe-user", "daemon")
    assert "planted: uid=1 " in chosen.stdout + chosen.stderr  # the operator's choice, not the image's


@pytest.mark.parametrize("account, said", [("root", "is root (uid 0)"), ("no-such-account-here", "no such account")])
def test_a_probe_user_that_is_root_or_missing_is_refused_before_anything_runs(image, outside, cli, account, said):
    for argv in (("verify",), ("apply", "--no-restart", "--force")):
        result = cli(*argv, "--root", image, "--profile", "h100-vgpu", "--probe", "--probe-user", account)
        assert result.returncode == 3, result.stdout + result.stderr
        [line] = result.stderr.splitlines()
        assert line.startswith(f"vgpu-fix {argv[0]}: error: --probe-user {account}: {said}")
        assert "planted:" not in result.stdout + result.stderr and not os.path.exists(outside)
    assert not os.path.exists(os.path.join(image, "var/lib/vgpu-fix"))  # apply changed nothing


def test_a_probe_of_an_untrusted_root_is_never_started_without_an_unprivileged_user():
    from fixer.errors import InvalidInput
    from fixer.probe import placement as sandbox

    placement = sandbox.Placement("/some/image", "isolated", untrusted=True)
    with pytest.raises(ValueError, match="never runs without an unprivileged user"):
        sandbox.start(placement, ["/usr/local/bin/ollama"], {}, user=None)
    with pytest.raises(InvalidInput, match="is root"):
        sandbox.resolve_user("root", untrusted=True)
    assert sandbox.resolve_user(None, untrusted=True)[0]["uid"] != 0


def test_what_a_probe_printed_reaches_reports_capped_and_printable():
    """A root's program chooses its output: escapes, bidi overrides and floods must not reach a terminal,
    a JSON consumer or the journal as they were printed."""
    from fixer.model.verify import MAX_ITEMS, MAX_TEXT, Check, VerifyReport

    hostile = Check("load", "fail", "\x1b]0;owned\x07title", evidence=["\x1b[2J" + "x" * (3 * MAX_TEXT)] * (2 * MAX_ITEMS),
                    cause="\u202eexe.txt", details={"stderr": "a\rb\x00c"})
    report = VerifyReport("/image", "p", "ollama.service", None, {}, checks=[hostile])
    check = report.to_dict()["checks"][0]
    assert check["summary"] == "\\x1b]0;owned\\x07title"
    assert len(check["evidence"]) == MAX_ITEMS + 1 and check["evidence"][-1] == f"… ({MAX_ITEMS} more)"
    assert check["evidence"][0].startswith("\\x1b[2Jxxx") and check["evidence"][0].endswith("more characters)")
    assert len(check["evidence"][0]) < MAX_TEXT + 40
    assert check["details"] == {"stderr": "a\\x0db\\x00c"} and report.to_dict()["cause"] == "\\u202eexe.txt"
