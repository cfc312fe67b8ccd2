"""The planner is pure: a facts snapshot in memory, the expected changes out; no tree on disk."""

from __future__ import annotations

import pytest

from fixer import plan as planner
from fixer import profiles
from fixer.facts import host, systemd
from fixer.facts.ldso import LD_SO_CONF, LD_SO_PRELOAD
from fixer.facts.paths import ABSENT, PathState

UNIT = "/usr/lib/systemd/system/ollama.service"
UNIT_TEXT = "[Service]\nExecStart=/usr/local/bin/ollama serve\nUser=ollama\n"
SHIM = "/opt/vgpu/lib/libvgpu-cuda.so"
PROFILE = profiles.load("h100-vgpu", "/nonexistent")


def text(data: str) -> PathState:
    return PathState("file", data=data.encode(), mode=0o644, uid=0, gid=0)


def snapshot(paths: dict[str, PathState] | None = None, dropins: dict[str, str] | None = None) -> host.HostState:
    """A host as plan sees it: every watched path absent unless given, the stock unit, optional drop-ins."""
    main = host.UnitFile(UNIT, UNIT_TEXT, tuple(systemd.parse(UNIT_TEXT)))
    unit = host._merged("ollama.service", "system", main, {}, {})
    for path, body in (dropins or {}).items():
        unit = host.with_dropin(unit, path, body)
    watched = [p for _, p in PROFILE.managed_paths()] + [LD_SO_PRELOAD, LD_SO_CONF]
    states = {p: ABSENT for p in watched} | {LD_SO_CONF: text("include /etc/ld.so.conf.d/*.conf\n")}
    return host.HostState(root="/snapshot", paths=states | (paths or {}), unsafe_parents={}, unit=unit,
                          ld_dirs=["/usr/lib"])


def preload_change(before: str) -> planner.Change:
    plan = planner.build(PROFILE, snapshot({LD_SO_PRELOAD: text(before)}))
    return next(c for c in plan.changes if c.path == LD_SO_PRELOAD)


# /etc/ld.so.preload as glibc reads it: `#` to end of line is a comment; whitespace or `:` separate names.
@pytest.mark.parametrize("before, action, after", [
    (f"# was: {SHIM}\n", "noop", None),
    (f"{SHIM}\n", "update", ""),
    (f"/x.so {SHIM}\n", "update", "/x.so\n"),
    (f"/x.so:{SHIM}:/y.so\n", "update", "/x.so /y.so\n"),
    (f"junk {SHIM} # note\n", "update", "junk # note\n"),
    (f"{SHIM} # keep this note\n", "update", "# keep this note\n"),
    ("/usr/lib/libjemalloc.so.2\n", "noop", None),
    (f"/a.so\n#{SHIM}\n{SHIM}\n", "update", f"/a.so\n#{SHIM}\n"),
], ids=["commented-out shim", "shim alone", "shim after another", "colon separated", "shim before a comment",
        "comment kept", "no shim", "only the live line"])
def test_ld_so_preload_entries_are_read_as_glibc_reads_them(before, action, after):
    change = preload_change(before)
    assert change.action == action
    if after is not None:
        assert change.after.text() == after


def test_a_snapshot_plan_creates_every_managed_path_and_restarts():
    plan = planner.build(PROFILE, snapshot())
    created = {c.path for c in plan.changes if c.action == "create"}
    assert PROFILE.dropin_path in created and "/opt/vgpu/lib/libcuda.so.1" in created
    assert plan.post_actions[-2:] == ["daemon-reload", "restart"]


def test_a_snapshot_that_already_matches_plans_nothing():
    first = planner.build(PROFILE, snapshot())
    after = {c.path: c.after for c in first.changes}
    dropin = after[PROFILE.dropin_path].text()
    plan = planner.build(PROFILE, snapshot(after, dropins={PROFILE.dropin_path: dropin}))
    assert plan.converged and plan.post_actions == []


@pytest.mark.parametrize("name, body, note", [
    ("override.conf", "[Service]\nEnvironment=OLLAMA_NUM_GPU=999\n",
     "supersedes OLLAMA_NUM_GPU=999 from /etc/systemd/system/ollama.service.d/override.conf (now unset)"),
    ("10-preload.conf", "[Service]\nEnvironment=LD_PRELOAD=/opt/vgpu/lib/libvgpu-cuda.so\n",
     "supersedes LD_PRELOAD=/opt/vgpu/lib/libvgpu-cuda.so from /etc/systemd/system/ollama.service.d/10-preload.conf"
     " (now unset)"),
])
def test_settings_our_dropin_supersedes_are_named_from_the_snapshot(name, body, note):
    plan = planner.build(PROFILE, snapshot(dropins={f"/etc/systemd/system/ollama.service.d/{name}": body}))
    assert note in plan.notes


def test_a_dropin_sorting_after_ours_that_shadows_a_value_is_a_warning():
    later = "/etc/systemd/system/ollama.service.d/zzz-local.conf"
    plan = planner.build(PROFILE, snapshot(dropins={later: '[Service]\nEnvironment="OLLAMA_LLM_LIBRARY=cuda"\n'}))
    assert any(w.startswith("OLLAMA_LLM_LIBRARY is shadowed by " + later) for w in plan.warnings)
