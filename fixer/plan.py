"""Pure planning: (profile, observed host) -> the changes that close the gap, each with its reason."""

from __future__ import annotations

import os

from fixer.facts import systemd as unitfile
from fixer.facts.host import HostState, with_dropin
from fixer.facts.ldso import LD_SO_CONF, LD_SO_PRELOAD, preload_line, split_preload
from fixer.facts.paths import ABSENT, PathState
from fixer.model.plan import Change, ChangeKind, Plan, PostAction  # noqa: F401  (Change and Plan: this module's results)
from fixer.model.profile import Profile

LD_SO_CONF_INCLUDE = "include /etc/ld.so.conf.d/*.conf\n"
LD_SO_CONF_D = "/etc/ld.so.conf.d"
UDEV_RULES_D = "/etc/udev/rules.d"
CONFIG_MODE = 0o644
MARKER = "# Managed by vgpu-fix"


def render_dropin(profile: Profile) -> str:
    """The drop-in vgpu-fix owns: environment, unsets and [Service] directives, systemd-quoted."""
    service = profile.service
    env = dict(service.effective_environment)
    unset = list(service.unset)
    for name, entries in (("LD_LIBRARY_PATH", profile.library_path), ("LD_PRELOAD", profile.preload)):
        if entries:
            env[name] = ":".join(entries)
        elif entries is not None and name not in unset:
            unset.append(name)
    lines = [
        f"{MARKER} (profile {profile.name}). Local edits are overwritten on the next apply:",
        "# change the profile instead, or add a drop-in that sorts before this one.",
        "[Service]",
    ]
    lines += [f"Environment={unitfile.quote_assignment(name, value)}" for name, value in env.items()]
    if unset:
        lines.append("UnsetEnvironment=" + " ".join(unset))
    for key, value in service.effective_directives.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key}={unitfile.unit_value(item, 'text')}")
    return "\n".join(lines) + "\n"


def render_ld_so_conf(profile: Profile) -> str:
    assert profile.ld_so_conf is not None
    header = f"# Managed by vgpu-fix (profile {profile.name}); run `ldconfig` after editing.\n"
    return header + "".join(f"{entry}\n" for entry in profile.ld_so_conf.entries)


def file_state(text: str, mode: int = CONFIG_MODE) -> PathState:
    return PathState("file", data=text.encode(), mode=mode, uid=0, gid=0)


def render_udev(profile: Profile) -> str:
    """The rule that lets the group map the PCI resources of exactly the devices with vendor AND device id.
    Every interpolated value was validated by its type (hex ids, an identifier); %p is udev's devpath."""
    udev = profile.udev
    assert udev is not None
    return (f"# Managed by vgpu-fix (profile {profile.name}): the shim maps the device's PCI resources as the "
            "service user.\n"
            f'ACTION=="add|change", SUBSYSTEM=="pci", ATTR{{vendor}}=="{udev.vendor}", ATTR{{device}}=="{udev.device}", '
            f"RUN+=\"/bin/sh -c 'chgrp {udev.group} /sys%p/resource* && chmod g+rw /sys%p/resource*'\"\n")


def build(profile: Profile, host: HostState, force: bool = False) -> Plan:
    plan = Plan(profile=profile.name, root=host.root, changes=[])
    for problem in _unsafe(profile, host):
        plan.conflicts.append(problem)
    _requires(plan, profile, host, force)
    _hami_core(plan, profile, host, force)
    _capabilities(plan, profile, host)
    for link in profile.symlinks:
        target = link.target if link.state == "present" else None
        if target is not None and link.path in host.missing_targets and not _blocked(plan, link.path):
            if not force:
                plan.conflicts.append(f"{link.path}: its target {target} does not exist under the root; a dangling "
                                      "link would let a stale copy found elsewhere win (fix the variable naming "
                                      "it, or use --force)")
                continue
            plan.forced.append(link.path)
            plan.warnings.append(f"{link.path}: target {target} does not exist (linked anyway: --force)")
        _symlink(plan, host, link.path, target, force)
    if _foreign_dropin(plan, host, profile.dropin_path, force):
        _file(plan, host, "dropin", profile.dropin_path, file_state(render_dropin(profile)),
              f"drop-in for {profile.service.unit}", force)
    if profile.ld_so_conf is not None:
        _file(plan, host, "ld_so_conf", profile.ld_so_conf_path, file_state(render_ld_so_conf(profile)),
              "ld.so.conf.d entry for the ld.so cache", force)
        _ld_so_conf_include(plan, host)
    if profile.udev is not None:
        _file(plan, host, "udev", profile.udev.path, file_state(render_udev(profile)),
              "udev rule for the para-virtual device", force)
    for managed in profile.files:
        if managed.state == "present":
            _file(plan, host, "file", managed.path, file_state(managed.content, managed.mode_bits),
                  "managed file", force)
        else:
            _absent(plan, host, managed.path, force)
    _ld_so_preload(plan, host, profile.ld_so_preload.remove)
    _watch(plan, host, profile, force)
    _service_notes(plan, profile, host)
    plan.post_actions = _post_actions(plan, profile, host)
    plan.fingerprints = fingerprints(host, plan)
    return plan


def _requires(plan: Plan, profile: Profile, host: HostState, force: bool) -> None:
    """A shim profile on a host with a real NVIDIA driver (or the reverse) is refused, unless forced."""
    wanted = profile.requires.nvidia_driver
    facts = host.nvidia
    if wanted == "absent" and facts.present:
        why = "; ".join([f"an NVIDIA kernel driver is bound to {b}" for b in facts.bound]
                        + [f"{p} comes from an NVIDIA driver package" for p in facts.packaged_libcuda])
        problem = (f"{profile.name} is for para-virtual shim guests without an NVIDIA driver, and {why}: its shims "
                   "would hide the real driver (GRID/vGPU guest, HAMi host or real GPU?)")
    elif wanted == "present" and not facts.present:
        problem = (f"{profile.name} is for hosts with the real NVIDIA driver, and no NVIDIA kernel driver is bound "
                   "nor a driver package's libcuda.so installed: it would remove what a shim guest needs")
    else:
        return
    if force:
        plan.forced.append("requires.nvidia_driver")
        plan.warnings.append(f"{problem} (planned anyway: --force)")
    else:
        plan.conflicts.append(f"requires.nvidia_driver: {problem} (use --force to plan anyway)")


# HAMi-core's hook library: preloaded (LD_PRELOAD=libvgpu.so) it enforces CUDA_DEVICE_MEMORY_LIMIT and
# CUDA_DEVICE_SM_LIMIT, this host's share of the GPU (HAMi-core README.md, "Usage").
HAMI_CORE = "libvgpu.so"
HAMI_LIMITS = ("CUDA_DEVICE_MEMORY_LIMIT", "CUDA_DEVICE_SM_LIMIT")


def _hami_core(plan: Plan, profile: Profile, host: HostState, force: bool) -> None:
    """A profile that would drop the service's HAMi-core preload, or the library pin it runs with, is refused
    unless forced: removing either silently lifts the GPU share's limits or changes the backend under them."""
    env = host.unit.environment.effective()
    hooks = [e for e in split_preload(env.get("LD_PRELOAD")) if os.path.basename(e) == HAMI_CORE]
    if not hooks:
        return
    lost = []
    if profile.preload is not None and any(h not in profile.preload for h in hooks):
        limits = ", ".join(f"{n}={env[n]}" for n in HAMI_LIMITS if n in env) or "its memory and SM limits"
        lost.append(f"the preload of {':'.join(hooks)} ({limits})")
    pin = env.get("OLLAMA_LLM_LIBRARY")
    wanted = profile.service.effective_environment.get("OLLAMA_LLM_LIBRARY")
    if pin and ("OLLAMA_LLM_LIBRARY" in profile.service.unset or wanted not in (None, pin)):
        lost.append(f"its pin OLLAMA_LLM_LIBRARY={pin}")
    if not lost:
        return
    problem = (f"{profile.name} would remove {' and '.join(lost)} from {profile.service.unit}: this is a HAMi-core "
               f"host, whose {HAMI_CORE} enforces its share of the GPU. Keep them in a profile that extends "
               f"{profile.name} (`preload: [{', '.join(hooks)}]`, the pin in service.environment)")
    if force:
        plan.forced.append("hami-core")
        plan.warnings.append(f"{problem} (planned anyway: --force)")
    else:
        plan.conflicts.append(f"{problem}, or use --force")


def _capabilities(plan: Plan, profile: Profile, host: HostState) -> None:
    """A CapabilityBoundingSet= list replaces systemd's full default: on a root unit it strips every other
    capability (DAC_OVERRIDE, CHOWN, NET_BIND_SERVICE, ...). Never narrow a root unit's bounding set."""
    value = profile.service.effective_directives.get("CapabilityBoundingSet")
    if value is None or host.unit.user not in (None, "root", "0"):
        return
    values = value if isinstance(value, list) else [value]
    if any(v.strip() and not v.strip().startswith("~") for v in values):
        plan.conflicts.append(
            f"{profile.dropin_path}: CapabilityBoundingSet={' '.join(values)} would narrow the bounding set of "
            f"{profile.service.unit}, which runs as root (it would lose DAC_OVERRIDE, CHOWN, NET_BIND_SERVICE, ...); "
            "remove it from the profile")


def _watch(plan: Plan, host: HostState, profile: Profile, force: bool) -> None:
    """The upgrade watch's units, enablement link and profile copy: present, absent, or left alone."""
    enabled = profile.watch.enabled
    if enabled is None:
        return
    from fixer import watch

    for kind, path, wanted in watch.planned(profile):
        wanted = wanted if enabled else None
        if kind == "link":
            _symlink(plan, host, path, wanted, force)
        elif wanted is not None:
            _file(plan, host, ChangeKind.WATCH, path, file_state(wanted), "upgrade watch", force)
        else:
            _absent(plan, host, path, force)


def _unsafe(profile: Profile, host: HostState) -> list[str]:
    problems = [f"{path}: {why}" for path, why in sorted(host.unsafe_parents.items())]
    if host.dropin_dir_problem:
        problems.append(host.dropin_dir_problem)
    return problems


def _foreign_dropin(plan: Plan, host: HostState, path: str, force: bool) -> bool:
    """A file at our drop-in path that vgpu-fix did not write (no marker, another owner, a mode other
    than 0644) is somebody else's: a conflict, or with --force a journaled replacement."""
    before = host.state(path)
    if before.kind != "file" or _blocked(plan, path):
        return True
    why = []
    if not (before.data or b"").startswith(MARKER.encode()):
        why.append("it has no vgpu-fix marker")
    if before.uid not in (0, host.euid) or before.gid not in (0, host.euid):
        why.append(f"it is owned by {before.uid}:{before.gid}")
    if before.mode != CONFIG_MODE:
        why.append(f"its mode is {before.mode:04o}")
    if not why:
        return True
    if not force:
        plan.conflicts.append(f"{path}: exists and was not written by vgpu-fix ({', '.join(why)}); "
                              "use --force to replace it (journaled)")
        return False
    plan.forced.append(path)
    return True


def _blocked(plan: Plan, path: str) -> bool:
    return any(c.startswith(f"{path}: ") for c in plan.conflicts)


def _replace_or_conflict(plan: Plan, path: str, before: PathState, wanted: str, force: bool) -> bool:
    """A path of the wrong type: conflict, or (with --force) a journaled replacement."""
    if before.kind == "dir" or before.kind == "other":
        plan.conflicts.append(f"{path}: is a {before.describe()} where a {wanted} belongs; remove it by hand")
        return False
    if not force:
        plan.conflicts.append(f"{path}: is a {before.describe()} where a {wanted} belongs (use --force to replace it)")
        return False
    plan.forced.append(path)
    return True


def _symlink(plan: Plan, host: HostState, path: str, target: str | None, force: bool) -> None:
    before = host.state(path)
    if _blocked(plan, path):
        return
    if target is None:
        if before.kind == "absent":
            plan.changes.append(Change("symlink", path, "noop", before, before, "already absent"))
        elif before.kind == "symlink":
            plan.changes.append(Change("symlink", path, "delete", before, ABSENT, "symlink must not exist"))
        elif _replace_or_conflict(plan, path, before, "removed symlink", force):
            plan.changes.append(Change("symlink", path, "delete", before, ABSENT, f"remove {before.describe()} (--force)"))
        return
    after = PathState("symlink", target=target)
    if before.kind == "symlink" and before.target == target:
        plan.changes.append(Change("symlink", path, "noop", before, after, f"already points to {target}"))
    elif before.kind == "absent":
        plan.changes.append(Change("symlink", path, "create", before, after, f"link to {target}"))
    elif before.kind == "symlink":
        plan.changes.append(Change("symlink", path, "update", before, after, f"points to {before.target}, must point to {target}"))
    elif _replace_or_conflict(plan, path, before, "symlink", force):
        plan.changes.append(Change("symlink", path, "update", before, after, f"replace {before.describe()} with a link (--force)"))


def _file(plan: Plan, host: HostState, kind: str, path: str, after: PathState, what: str, force: bool) -> None:
    before = host.state(path)
    if _blocked(plan, path):
        return
    if before.kind == "absent":
        plan.changes.append(Change(kind, path, "create", before, after, f"{what}: missing"))
    elif before.kind != "file":
        if _replace_or_conflict(plan, path, before, "regular file", force):
            plan.changes.append(Change(kind, path, "update", before, after, f"replace {before.describe()} (--force)"))
    elif before.data != after.data:
        _hard_links(plan, path, before)
        plan.changes.append(Change(kind, path, "update", before, _owner(kind, after, before), f"{what}: content differs"))
    elif before.mode != after.mode or (kind == "dropin" and (before.uid, before.gid) != (after.uid, after.gid)
                                       and path in plan.forced):
        plan.changes.append(Change(kind, path, "update", before, _owner(kind, after, before),
                                   f"mode {before.mode:04o} must be {after.mode:04o}"
                                   if before.mode != after.mode else "must be owned by root"))
    else:
        plan.changes.append(Change(kind, path, "noop", before, before, f"{what}: up to date"))


def _hard_links(plan: Plan, path: str, before: PathState) -> None:
    if before.links > 1:
        plan.warnings.append(f"{path} has {before.links} hard links: apply writes a new file, so the other names "
                             "keep the old content; rollback restores the content, not the link")


def _owner(kind: str, after: PathState, before: PathState) -> PathState:
    """Drop-ins are always root-owned; other managed files keep the owner they have."""
    if kind == "dropin":
        return after
    return PathState("file", data=after.data, mode=after.mode, uid=before.uid, gid=before.gid)


def _absent(plan: Plan, host: HostState, path: str, force: bool) -> None:
    before = host.state(path)
    if _blocked(plan, path):
        return
    if before.kind == "absent":
        plan.changes.append(Change("absent", path, "noop", before, before, "already absent"))
    elif before.kind == "dir":
        plan.conflicts.append(f"{path}: is a directory; vgpu-fix removes files and symlinks only")
    elif before.kind == "other":
        plan.conflicts.append(f"{path}: is a FIFO, socket or device node; vgpu-fix cannot journal and restore "
                              "one exactly, so it never removes one (even with --force); remove it by hand")
    else:
        plan.changes.append(Change("absent", path, "delete", before, ABSENT, f"{before.describe()} must not exist"))


def _ld_so_conf_include(plan: Plan, host: HostState) -> None:
    """ldconfig reads ld.so.conf.d only through ld.so.conf's include line; create it where missing."""
    before = host.state(LD_SO_CONF)
    if before.kind == "absent":
        plan.changes.append(Change("ld_so_conf", LD_SO_CONF, "create", ABSENT, file_state(LD_SO_CONF_INCLUDE),
                                   "ld.so.conf is missing, so ldconfig would never read ld.so.conf.d"))
    elif before.kind == "file" and "ld.so.conf.d" not in before.text():
        plan.warnings.append(f"{LD_SO_CONF} does not include /etc/ld.so.conf.d/*.conf: ldconfig ignores the profile's entries")


def _ld_so_preload(plan: Plan, host: HostState, patterns: list[str]) -> None:
    before = host.state(LD_SO_PRELOAD)
    if not patterns or before.kind == "absent":
        if patterns:
            plan.changes.append(Change("ld_so_preload", LD_SO_PRELOAD, "noop", before, before, "no /etc/ld.so.preload"))
        return
    if before.kind != "file":
        plan.conflicts.append(f"{LD_SO_PRELOAD}: is a {before.describe()}, not a regular file")
        return

    import fnmatch

    def banned(entry: str) -> bool:
        return any(fnmatch.fnmatchcase(entry, p) or fnmatch.fnmatchcase(os.path.basename(entry), p) for p in patterns)

    kept, removed = [], []
    # surrogateescape: bytes that are not UTF-8 in the lines that stay are written back unchanged.
    for line in (before.data or b"").decode("utf-8", "surrogateescape").split("\n"):
        entries, comment = preload_line(line)
        hits = [e for e in entries if banned(e)]
        if not hits:
            kept.append(line)
            continue
        removed += hits
        rest = " ".join(e for e in entries if not banned(e))
        if rest or comment:
            kept.append(" ".join(filter(None, (rest, comment))))
    if not removed:
        plan.changes.append(Change("ld_so_preload", LD_SO_PRELOAD, "noop", before, before, "lists no forbidden library"))
        return
    _hard_links(plan, LD_SO_PRELOAD, before)
    after = PathState("file", data="\n".join(kept).encode("utf-8", "surrogateescape"), mode=before.mode, uid=before.uid, gid=before.gid)
    plan.changes.append(Change("ld_so_preload", LD_SO_PRELOAD, "update", before, after,
                               "system-wide preload of " + ", ".join(_shown(r) for r in removed) + " (bricks hosts; other entries stay)"))


def _shown(entry: str) -> str:
    return entry.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _service_notes(plan: Plan, profile: Profile, host: HostState) -> None:
    """Which hand-made settings our drop-in supersedes, and which of ours a later file still shadows."""
    ours = profile.dropin_path
    dropin = next(c for c in plan.changes if c.path == ours) if not _blocked(plan, ours) else None
    if host.unit.unit_file is None:
        plan.warnings.append(f"{profile.service.unit} is not installed under this root; the drop-in waits for it")
    others = [f for f in host.unit.files if f.path != ours]
    for f in others:
        if f.path in [d.path for d in host.unit.dropins] and not f.has_service_section:
            plan.warnings.append(f"{f.path} has no [Service] header: systemd ignores every setting in it")
    if dropin is None:
        return
    predicted = with_dropin(host.unit, ours, dropin.after.text())
    plan.warnings += predicted.problems
    masking = [d.path for d in predicted.dropins if os.path.basename(d.path) == os.path.basename(ours) and d.path != ours]
    if masking:
        plan.conflicts.append(f"{ours}: masked by {masking[0]}: a drop-in of the same name in a directory systemd "
                              "reads first replaces ours entirely; remove or rename that file, or pick another "
                              "service.dropin")
        return
    env = predicted.environment
    wanted = unitfile.merge_environment([(ours, unitfile.parse(dropin.after.text()))])
    managed = set(wanted.values) | {w.partition("=")[0] for w in wanted.unset}
    order = [f.path for f in predicted.files]
    later = set(order[order.index(ours) + 1:]) if ours in order else set()
    for f in others:
        if f.path in later:  # a file merged after ours is not superseded: it shadows (warned below)
            continue
        for name, value in unitfile.assignments(f.settings):
            if name in managed:
                new = "unset" if name not in wanted.effective() else f"{name}={wanted.values[name]}"
                old = f"{name}={value}" if value is not None else f"UnsetEnvironment={name}"
                if old != new:
                    plan.notes.append(f"supersedes {old} from {f.path} (now {new})")
        for s in f.settings:
            if s.section == "Service" and s.key in profile.service.effective_directives:
                plan.notes.append(f"supersedes {s.key}={s.value} from {f.path}")
    effective = env.effective()
    for name, value in wanted.effective().items():
        if effective.get(name) != value:
            culprit = env.unset_by(name) or env.origin.get(name, "an earlier Environment= reset")
            plan.warnings.append(f"{name} is shadowed by {culprit}: the service would not get {name}={value}")
    for name in {w.partition('=')[0] for w in wanted.unset}:
        if name in effective:
            plan.warnings.append(f"{name} stays set by {env.origin.get(name)} despite UnsetEnvironment")


def _post_actions(plan: Plan, profile: Profile, host: HostState) -> list[str]:
    pending = plan.pending
    if not pending:
        return []
    ld_dirs = set(host.ld_dirs) | set(profile.ld_so_conf.entries if profile.ld_so_conf else [])
    watch_files = set(profile.watch_files.values()) if profile.watch.enabled is not None else set()
    watched = [c for c in pending if c.path in watch_files]
    actions = []
    if any(c.kind == "ld_so_conf" or os.path.dirname(c.path) in ld_dirs | {LD_SO_CONF_D} for c in pending):
        actions.append(PostAction.LDCONFIG)
    if any(os.path.dirname(c.path) == UDEV_RULES_D for c in pending):
        actions.append(PostAction.UDEV_RELOAD)
        if profile.udev is not None:
            # Exactly the devices the rule matches, so verify (as the service user) sees the new permissions.
            actions += [f"{PostAction.UDEV_TRIGGER} {d.syspath}" for d in host.pci
                        if d.vendor == profile.udev.vendor and d.device == profile.udev.device]
    if any(c.kind == "dropin" for c in pending) or watched:
        actions.append(PostAction.DAEMON_RELOAD)
    if watched:
        actions.append(PostAction.START_WATCH if profile.watch.enabled else PostAction.STOP_WATCH)
    if len(watched) < len(pending):  # the watch alone does not need Ollama restarted
        actions.append(PostAction.RESTART)
    return actions


def fingerprints(host: HostState, plan: Plan) -> dict[str, str]:
    """Digests of every before-state the plan depends on, so a saved plan can detect a changed host."""
    prints = {c.path: c.before.fingerprint() for c in plan.changes}
    for f in host.unit.files:
        prints.setdefault(f.path, PathState("file", data=f.text.encode(), mode=0).fingerprint())
    return dict(sorted(prints.items()))
