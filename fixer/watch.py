"""Upgrade survival: the systemd units a profile's `watch` section manages (desired state, below the planner)
and what is in place; the check the units run is fixer.watch_check."""

from __future__ import annotations

import json
import posixpath

from fixer.facts.systemd import unit_value
from fixer.model.profile import Profile

CHECK_TIMEOUT = "15min"


def watched_paths(profile: Profile) -> list[str]:
    """What an Ollama upgrade (install.sh) replaces, plus the shim dirs the profile links into."""
    spec = profile.verify
    found = [spec.ollama_bin, spec.ollama_lib, f"{spec.ollama_lib}/{spec.library}"]
    found += sorted({posixpath.dirname(s.path) for s in profile.symlinks if not s.path.startswith(spec.ollama_lib + "/")})
    found += profile.watch.paths
    return list(dict.fromkeys(found))


DEFAULT_COMMAND = ("vgpu-fix",)  # systemd finds a bare name on its fixed search path (/usr/local/bin, /usr/bin, ...)


def command(profile: Profile) -> list[str]:
    """How the watch service runs vgpu-fix: the profile's `watch.command`, else the console script by name.
    Never the interpreter computing the plan: the CLI and the Ansible module (two Pythons) must want the
    same unit, or each would see drift after the other applied."""
    return list(profile.watch.command or DEFAULT_COMMAND)


def _header(profile: Profile) -> str:
    return f"# Managed by vgpu-fix (profile {profile.name}, section `watch`); change the profile, not this file.\n"


def render_path_unit(profile: Profile) -> str:
    unit = profile.watch.unit
    lines = [_header(profile).rstrip("\n"), "[Unit]",
             "Description=vgpu-fix: re-verify Ollama's GPU backend when its files change", "", "[Path]"]
    lines += [f"PathChanged={unit_value(p, 'path')}" for p in watched_paths(profile)]
    lines += [f"Unit={unit}.service", "", "[Install]",
              "WantedBy=" + ("paths.target" if profile.service.scope == "system" else "default.target")]
    return "\n".join(lines) + "\n"


def render_service_unit(profile: Profile) -> str:
    return _oneshot(profile, "verify Ollama's GPU backend after a change of its files", profile.watch.unit,
                    ["watch", "check", "--root", "/", "--profile", profile.watch_files["profile"]])


def render_textfile_service(profile: Profile) -> str:
    """The oneshot the timer starts: `vgpu-fix status --prometheus TEXTFILE` against the profile copy."""
    return _oneshot(profile, "refresh the node-exporter textfile (vgpu-fix status --prometheus)",
                    f"{profile.watch.unit}-textfile", ["status", "--root", "/", "--profile",
                                                       profile.watch_files["profile"], "--prometheus", profile.watch.textfile])


def _oneshot(profile: Profile, what: str, identifier: str, args: list[str]) -> str:
    """A Type=oneshot unit that runs this vgpu-fix with `args`, logging as `identifier`."""
    argv = command(profile) + args
    lines = [_header(profile).rstrip("\n"), "[Unit]", f"Description=vgpu-fix: {what}", "", "[Service]",
             "Type=oneshot", f"SyslogIdentifier={identifier}", f"TimeoutStartSec={CHECK_TIMEOUT}",
             "ExecStart=" + " ".join(unit_value(w, "exec") for w in argv)]
    return "\n".join(lines) + "\n"


def render_textfile_timer(profile: Profile) -> str:
    """At once when it starts (enable, boot), then every `textfile_every`."""
    unit = profile.watch.unit
    lines = [_header(profile).rstrip("\n"), "[Unit]", "Description=vgpu-fix: refresh the node-exporter textfile", "",
             "[Timer]", "OnActiveSec=1s", f"OnUnitActiveSec={profile.watch.textfile_every}",
             f"Unit={unit}-textfile.service", "", "[Install]", "WantedBy=timers.target"]
    return "\n".join(lines) + "\n"


def render_profile(profile: Profile) -> str:
    """The resolved profile the service checks against, as JSON (a YAML subset vgpu-fix loads back)."""

    def literal(node):  # resolved values: keep a `${` literal when the file is loaded again
        if isinstance(node, dict):
            return {k: literal(v) for k, v in node.items()}
        if isinstance(node, list):
            return [literal(v) for v in node]
        return node.replace("${", "$${") if isinstance(node, str) else node

    data = profile.model_dump(mode="json")
    data["watch"]["command"] = command(profile)
    data["vars"] = {}
    return json.dumps(literal(data), indent=1) + "\n"


def planned(profile: Profile) -> list[tuple[str, str, str | None]]:
    """(kind, path, content or link target; None: absent) of everything the section manages when it is
    on, in write order; the textfile timer's files are absent without `textfile`."""
    files, timer = profile.watch_files, profile.watch.textfile is not None
    return [("file", files["profile"], render_profile(profile)),
            ("file", files["service"], render_service_unit(profile)),
            ("file", files["path"], render_path_unit(profile)),
            ("link", files["wants"], files["path"]),
            ("file", files["textfile_service"], render_textfile_service(profile) if timer else None),
            ("file", files["textfile_timer"], render_textfile_timer(profile) if timer else None),
            ("link", files["textfile_wants"], files["textfile_timer"] if timer else None)]


# ------------------------------------------------------------------ on the host (read side)


def state(root: str, profile: Profile) -> dict:
    """`watch status`: which units are in place, enabled and (on a live root) active; reads only."""
    from fixer import system
    from fixer.errors import ExternalCommandFailed
    from fixer.facts.paths import read_state

    files = profile.watch_files
    present = {role: read_state(root, path).kind != "absent" for role, path in files.items()}
    active = None
    if system.systemd_live(root, profile.service.scope) and present["path"]:
        try:
            active = system.systemctl(profile.service.scope, "show", "-p", "ActiveState", "--value",
                                      f"{profile.watch.unit}.path").strip()
        except ExternalCommandFailed:
            active = "unknown"
    return {"unit": f"{profile.watch.unit}.path", "installed": present["path"] and present["service"],
            "enabled": present["wants"], "active": active, "watched": watched_paths(profile),
            "reapply": profile.watch.reapply, "textfile": profile.watch.textfile,
            "textfile_timer": present["textfile_wants"] and present["textfile_timer"]}
