"""Desired state: the Profile and its parts, validated by Pydantic."""

import posixpath
import re
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from fixer.model.path import NAME_MAX
from fixer.model.path import check_path as _absolute_path
from fixer.model.owned import LD_SO_CACHE, LD_SO_CONF, LD_SO_PRELOAD, STATE_DIR
from fixer.model.unit_text import unit_value
from fixer.model import stock_ollama as ollama

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DIRECTIVE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
MAX_VALUE_LEN = 32 * 1024

# [Service] settings a profile may manage besides the environment. Environment handling and the
# command line stay out: a drop-in that changes ExecStart is a known cause of CPU fallback.
ALLOWED_DIRECTIVES = frozenset(
    """
    LimitMEMLOCK LimitNOFILE LimitNPROC LimitSTACK LimitCORE LimitAS LimitDATA LimitRSS
    CapabilityBoundingSet AmbientCapabilities NoNewPrivileges SecureBits
    PrivateDevices PrivateTmp PrivateUsers ProtectKernelTunables ProtectKernelModules
    ProtectControlGroups ProtectSystem ProtectHome ProtectClock ProtectHostname ProtectProc
    ReadWritePaths ReadOnlyPaths InaccessiblePaths ExecPaths NoExecPaths DeviceAllow DevicePolicy
    SupplementaryGroups User Group DynamicUser MemoryDenyWriteExecute RestrictNamespaces
    RestrictRealtime LockPersonality SystemCallFilter SystemCallArchitectures
    TimeoutStartSec TimeoutStopSec TimeoutSec Restart RestartSec OOMScoreAdjust Nice
    LimitMEMLOCKSoft MemoryMax MemoryHigh TasksMax
    """.split()
)
FORBIDDEN_DIRECTIVE_HINT = {
    "Environment": "use `service.environment`",
    "UnsetEnvironment": "use `service.unset`",
    "EnvironmentFile": "use `service.environment`",
    "ExecStart": "a wrapper ExecStart makes Ollama fall back to the CPU; leave the command line alone",
}


VarType = Literal["string", "path", "hex_id", "identifier", "soname", "duration", "integer", "boolean", "enum",
                  "capabilities", "library_folder"]
# Each type's full-match pattern; `path` and `integer` are checked further in var_problem.
VAR_TYPES = {
    "string": (r"[^\x00-\x08\x0a-\x1f\x7f]*", "text without control characters"),
    "path": (r"/[A-Za-z0-9._+@/-]*", "an absolute path of letters, digits and ._+@-"),
    "hex_id": (r"0x[0-9a-f]{4}", "a 4-digit lower-case hex id like 0x10de"),
    "identifier": (r"[A-Za-z_][A-Za-z0-9_-]{0,31}", "a user/group-style identifier"),
    "soname": (r"lib[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*\.so(\.[0-9]+)*", "a library file name like libfoo.so.1"),
    "duration": (r"[0-9]+|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+", "a duration like 90s, 15m or 2h"),
    "integer": (r"-?[0-9]+", "an integer"),
    "boolean": (r"true|false|1|0", "true, false, 1 or 0"),
    "enum": (r".*", "one of the choices"),
    "capabilities": (r"(CAP_[A-Z_]+( CAP_[A-Z_]+)*)?", "space-separated CAP_* names, or empty"),
    "library_folder": (r"cuda_v[0-9]+|auto", "an Ollama library folder like cuda_v12, or auto"),
}
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def var_problem(kind: str, value: str, pattern: str | None = None, choices: list[str] | None = None,
                minimum: int | None = None, maximum: int | None = None) -> str | None:
    """Why `value` is not a valid `kind` (with the extra pattern, choices and bounds), or None."""
    regex, meaning = VAR_TYPES[kind]
    if not isinstance(value, str) or not re.fullmatch(regex, value):
        return f"is not {meaning}"
    if kind == "path":
        try:
            _absolute_path(value)
        except ValueError as exc:
            return str(exc)
    if kind == "enum" and value not in (choices or []):
        return f"is not one of {', '.join(choices or [])}"
    if kind == "integer" and ((minimum is not None and int(value) < minimum)
                              or (maximum is not None and int(value) > maximum)):
        return f"is outside {minimum if minimum is not None else '-inf'}..{maximum if maximum is not None else 'inf'}"
    if pattern is not None and not re.fullmatch(pattern, value):
        return f"does not match the pattern {pattern}"
    return None


def _typed(kind: str, value: str) -> str:
    problem = var_problem(kind, value)
    if problem:
        raise ValueError(f"{value!r} {problem}")
    return value


def _var_name(name: str) -> str:
    if not VAR_NAME.match(name):
        raise ValueError(f"{name!r} is not a variable name (letters, digits and _)")
    return name


def _file_name(value: str) -> str:
    if not value or "/" in value or value in (".", "..") or "\x00" in value or "\n" in value:
        raise ValueError(f"must be a plain file name, got {value!r}")
    if len(value.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise ValueError(f"is longer than {NAME_MAX} bytes (the kernel's NAME_MAX)")
    return value


def _visible_conf(value: str, reader: str) -> str:
    if value.startswith("."):
        raise ValueError(f"must not start with '.': {reader} ignores hidden files")
    return value




def _systemd_value(value: str) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    bad = [c for c in value if ord(c) < 0x20 and c != "\t" or c == "\x7f"]
    if bad:
        raise ValueError(
            f"contains a control character ({bad[0]!r}) that a systemd unit file cannot carry"
        )
    if len(value) > MAX_VALUE_LEN:
        raise ValueError(f"is {len(value)} characters long; the limit is {MAX_VALUE_LEN}")
    return value


def _env_name(name: str) -> str:
    if not ENV_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid environment variable name")
    if name in ("LD_PRELOAD", "LD_LIBRARY_PATH"):
        raise ValueError(f"set {name} through the profile's `preload` / `library_path`")
    return name


def _directive_name(name: str) -> str:
    if name in FORBIDDEN_DIRECTIVE_HINT:
        raise ValueError(f"{name} is not allowed here: {FORBIDDEN_DIRECTIVE_HINT[name]}")
    if not DIRECTIVE_NAME.match(name) or name not in ALLOWED_DIRECTIVES:
        raise ValueError(f"{name!r} is not a [Service] setting vgpu-fix manages")
    return name


AbsPath = Annotated[str, AfterValidator(_absolute_path)]
EnvName = Annotated[str, AfterValidator(_env_name)]
DirectiveName = Annotated[str, AfterValidator(_directive_name)]
FileName = Annotated[str, AfterValidator(_file_name)]
SystemdValue = Annotated[str, AfterValidator(_systemd_value)]
VarName = Annotated[str, AfterValidator(_var_name)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Symlink(Model):
    """A symbolic link that must exist with this target, or must not exist."""

    path: AbsPath
    target: str = ""
    state: Literal["present", "absent"] = "present"

    @model_validator(mode="after")
    def _target(self) -> "Symlink":
        if self.state == "present":
            if not self.target or "\x00" in self.target or "\n" in self.target:
                raise ValueError("a present symlink needs a target without NUL or newline")
            depth = 0
            for part in posixpath.join(posixpath.dirname(self.path), self.target).split("/"):
                depth = depth - 1 if part == ".." else depth + (part not in ("", "."))
                if depth < 0:
                    raise ValueError(f"target {self.target!r} climbs out of the root")
        return self


class ManagedFile(Model):
    """A small file with exact content and mode, or a path that must not exist (any type)."""

    path: AbsPath
    state: Literal["present", "absent"] = "present"
    content: str | None = None
    mode: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")] = "0644"

    @field_validator("mode", mode="before")
    @classmethod
    def _quoted(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f"write the mode as a quoted octal string like '0644', not {value}")
        return value

    @property
    def mode_bits(self) -> int:
        return int(self.mode, 8)

    @model_validator(mode="after")
    def _content(self) -> "ManagedFile":
        if self.state == "present" and self.content is None:
            raise ValueError("a present file needs `content`")
        if self.state == "absent" and self.content is not None:
            raise ValueError("an absent file takes no `content`")
        if self.content is not None and "\x00" in self.content:
            raise ValueError("content must not contain NUL bytes")
        return self


class Service(Model):
    """The systemd unit to fix and the drop-in vgpu-fix owns for it."""

    unit: Annotated[str, Field(pattern=r"^[A-Za-z0-9:_.\\@-]+\.service$")] = "ollama.service"
    scope: Literal["system", "user"] = "system"
    dropin: FileName = "zz-vgpu-fix.conf"
    environment: dict[EnvName, SystemdValue] = {}
    environment_if_set: dict[EnvName, SystemdValue] = {}
    unset: list[str] = []
    directives: dict[DirectiveName, Union[SystemdValue, list[SystemdValue]]] = {}
    directives_if_set: dict[DirectiveName, SystemdValue] = {}

    @property
    def effective_environment(self) -> dict[str, str]:
        """`environment` plus the `environment_if_set` entries whose value is not empty."""
        return {**self.environment, **{k: v for k, v in self.environment_if_set.items() if v}}

    @property
    def effective_directives(self) -> dict[str, str | list[str]]:
        """`directives` plus the `directives_if_set` entries whose value is not empty."""
        return {**self.directives, **{k: v for k, v in self.directives_if_set.items() if v}}

    @field_validator("dropin")
    @classmethod
    def _conf(cls, value: str) -> str:
        if not value.endswith(".conf"):
            raise ValueError("a drop-in file name must end in .conf (systemd ignores others)")
        return _visible_conf(value, "systemd")

    @field_validator("unset")
    @classmethod
    def _unset_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        if len(set(value)) != len(value):
            raise ValueError("lists a variable twice")
        return value

    @field_validator("directives", "directives_if_set", mode="before")
    @classmethod
    def _directive_scalars(cls, value: object) -> object:
        def text(item: object) -> object:
            if isinstance(item, bool):
                return "yes" if item else "no"
            return str(item) if isinstance(item, int) else item

        if isinstance(value, dict):
            return {k: [text(i) for i in v] if isinstance(v, list) else text(v) for k, v in value.items()}
        return value

    @field_validator("directives", "directives_if_set")
    @classmethod
    def _no_continuation(cls, value: dict) -> dict:
        for name, item in value.items():
            for v in item if isinstance(item, list) else [item]:
                try:
                    unit_value(v, "text")
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _set_and_unset(self) -> "Service":
        both = sorted((set(self.environment) | set(self.environment_if_set)) & set(self.unset))
        if both:
            raise ValueError(f"{', '.join(both)} both set and unset")
        twice = sorted(set(self.environment) & set(self.environment_if_set))
        twice += sorted(set(self.directives) & set(self.directives_if_set))
        if twice:
            raise ValueError(f"{', '.join(twice)} given both unconditionally and in an *_if_set mapping")
        return self


class LdSoConf(Model):
    """A file in /etc/ld.so.conf.d listing directories for the ld.so cache, in order."""

    file: FileName = "vgpu-fix.conf"
    entries: list[AbsPath] = []

    @field_validator("file")
    @classmethod
    def _conf(cls, value: str) -> str:
        if not value.endswith(".conf"):
            raise ValueError("must end in .conf: /etc/ld.so.conf includes only ld.so.conf.d/*.conf")
        return _visible_conf(value, "ldconfig's include glob")

    @field_validator("entries")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        _no_duplicates(value)
        return value


class LdSoPreload(Model):
    """Entries that must not appear in /etc/ld.so.preload (shell-style patterns); others stay."""

    remove: list[str] = []


class Verify(Model):
    """What proves success: the backend that must load and how many devices it must report."""

    ollama_lib: AbsPath = ollama.DEFAULT_LIB
    # `auto`: the folder unpinned Ollama picks for the installed NVIDIA driver (see facts.nvidia).
    library: FileName = ollama.CUDA_LIB
    backend: FileName = ollama.BACKEND
    ollama_bin: AbsPath = ollama.OLLAMA_BIN
    min_devices: int = Field(default=1, ge=0)
    timeout: float = Field(default=20.0, gt=0, le=600)


class Variable(Model):
    """A profile variable: its type (and optional pattern or choices) and its value; `--set` must match."""

    type: VarType = "string"
    value: str = ""
    pattern: str | None = None
    choices: list[str] | None = None
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""
    auto: str | None = None  # what a value of `auto` became on this host, and why (fixer.ollama.host_defaults)

    @field_validator("value", mode="before")
    @classmethod
    def _scalar(cls, value: object) -> object:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, (int, float)) else value

    @model_validator(mode="after")
    def _valid(self) -> "Variable":
        if self.type == "enum" and not self.choices:
            raise ValueError("an enum variable needs `choices`")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a regular expression: {exc}") from None
        problem = self.problem(self.value)
        if problem:
            raise ValueError(f"value {self.value!r} {problem}")
        return self

    def problem(self, value: str) -> str | None:
        """Why `value` does not fit this variable, or None."""
        return var_problem(self.type, value, self.pattern, self.choices, self.minimum, self.maximum)


class Udev(Model):
    """A udev rule letting `group` map the PCI resources of exactly the devices with vendor AND device id."""

    file: FileName = "70-vgpu-fix.rules"
    vendor: Annotated[str, AfterValidator(lambda v: _typed("hex_id", v))]
    device: Annotated[str, AfterValidator(lambda v: _typed("hex_id", v))]
    group: Annotated[str, AfterValidator(lambda v: _typed("identifier", v))]

    @field_validator("file")
    @classmethod
    def _rules(cls, value: str) -> str:
        if not value.endswith(".rules"):
            raise ValueError("must end in .rules: udev reads only *.rules files")
        return value

    @property
    def path(self) -> str:
        return f"/etc/udev/rules.d/{self.file}"


class Requires(Model):
    """What the host must be for this profile; plan refuses (conflict) otherwise, unless --force."""

    nvidia_driver: Literal["absent", "present", "any"] = "any"


class Watch(Model):
    """Upgrade survival: a systemd .path unit that re-verifies the host when Ollama's files change.
    `enabled: null` leaves any watch units alone; true installs and starts them; false removes them."""

    enabled: bool | None = None
    paths: list[AbsPath] = []  # watched besides Ollama's binary, lib dir and the shim dirs
    settle: float = Field(default=5.0, ge=0, le=600)  # seconds without further change before checking
    reapply: bool = False  # after a failed verify or drift, apply the profile again (journaled)
    unit: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]+$")] = "vgpu-fix-watch"
    command: list[SystemdValue] | None = None  # how the service runs vgpu-fix (default: `vgpu-fix` by name)
    # node-exporter textfile (`vgpu-fix status --prometheus`): a timer refreshes it, and so does every check
    textfile: AbsPath | None = None
    textfile_every: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,5}(s|min|h)$")] = "5min"  # the timer's period

    @field_validator("paths")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        _no_duplicates(value)
        for path in value:
            try:  # what PathChanged= cannot carry is refused here, with its location
                unit_value(path, "path")
            except ValueError as exc:
                raise ValueError(f"{path!r}: {exc}") from None
        return value


class Profile(Model):
    """Desired state of one host kind. `preload: null` leaves LD_PRELOAD alone; `[]` unsets it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    vars: dict[VarName, Variable] = {}
    cannot_fix: list[str] = []
    requires: Requires = Field(default_factory=Requires)
    symlinks: list[Symlink] = []
    service: Service = Field(default_factory=Service)
    preload: list[AbsPath] | None = None
    library_path: list[AbsPath] | None = None
    ld_so_conf: LdSoConf | None = None
    files: list[ManagedFile] = []
    udev: Udev | None = None
    ld_so_preload: LdSoPreload = Field(default_factory=LdSoPreload)
    verify: Verify = Field(default_factory=Verify)
    watch: Watch = Field(default_factory=Watch)
    # Where it was loaded from: {"ref": name, path or label, "path": its file (None: a document given as
    # text), "vars": the --set overrides}; set by profiles.load, journaled by apply (core.applied_profile).
    _origin: dict | None = PrivateAttr(default=None)

    @property
    def origin(self) -> dict | None:
        return self._origin

    @field_validator("preload", "library_path")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            _no_duplicates(value)
            for entry in value:
                if ":" in entry or " " in entry:
                    raise ValueError(f"{entry!r}: ':' and spaces separate entries in this variable")
        return value

    @model_validator(mode="after")
    def _distinct_paths(self) -> "Profile":
        seen = {path: where for where, path in self.reserved_paths()}
        for where, path in self.managed_paths():
            if path == STATE_DIR or path.startswith(STATE_DIR + "/"):
                raise ValueError(f"{path} is inside vgpu-fix's state directory {STATE_DIR}, which no profile "
                                 f"may touch (by {where})")
            if path in seen:
                raise ValueError(f"path {path} is managed twice; one path has one owner (by {seen[path]} and by {where})")
            seen[path] = where
        return self

    def reserved_paths(self) -> list[tuple[str, str]]:
        """Paths another part of vgpu-fix owns, whatever the profile says: a `files:` entry may not take them."""
        return [("ld_so_preload (vgpu-fix edits it in place)", LD_SO_PRELOAD),
                ("ld_so_conf (the include line vgpu-fix keeps)", LD_SO_CONF),
                ("ldconfig (its cache)", LD_SO_CACHE)]

    def managed_paths(self) -> list[tuple[str, str]]:
        """(where in the profile, absolute path) for every path the profile writes or removes."""
        # Paths a section owns come first, so a duplicate `symlinks:`/`files:` entry is the one blamed.
        found = [("service.dropin", self.dropin_path)]
        if self.ld_so_conf is not None:
            found.append(("ld_so_conf.file", self.ld_so_conf_path))
        if self.udev is not None:
            found.append(("udev.file", self.udev.path))
        found += [(f"symlinks[{i}]", s.path) for i, s in enumerate(self.symlinks)]
        found += [(f"files[{i}]", f.path) for i, f in enumerate(self.files)]
        if self.watch.enabled is not None:
            found += [(f"watch ({role})", path) for role, path in self.watch_files.items()]
        return found

    @property
    def unit_dir(self) -> str:
        return "/etc/systemd/system" if self.service.scope == "system" else "/etc/systemd/user"

    @property
    def watch_files(self) -> dict[str, str]:
        """The paths the `watch` section manages, by role: the two units, their enablement link, the
        resolved profile the service checks against, and the textfile timer's two units and link (absent
        without `textfile`)."""
        unit, base = self.watch.unit, self.unit_dir
        target = "paths.target" if self.service.scope == "system" else "default.target"
        return {"path": f"{base}/{unit}.path", "service": f"{base}/{unit}.service",
                "wants": f"{base}/{target}.wants/{unit}.path", "profile": f"/etc/vgpu-fix/{unit}.profile.json",
                "textfile_service": f"{base}/{unit}-textfile.service", "textfile_timer": f"{base}/{unit}-textfile.timer",
                "textfile_wants": f"{base}/timers.target.wants/{unit}-textfile.timer"}

    @property
    def dropin_path(self) -> str:
        return f"{self.unit_dir}/{self.service.unit}.d/{self.service.dropin}"

    @property
    def ld_so_conf_path(self) -> str | None:
        return None if self.ld_so_conf is None else f"/etc/ld.so.conf.d/{self.ld_so_conf.file}"


def _no_duplicates(values: list[str]) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"lists {value!r} twice")
        seen.add(value)


def model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the keys at key path `loc` of a profile (None past a leaf)."""
    import types
    import typing

    def unwrap(node):
        while typing.get_origin(node) in (typing.Union, types.UnionType, typing.Annotated):
            node = next(a for a in typing.get_args(node) if a is not type(None))
        return node

    node = Profile
    for part in loc:
        node = unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            if part not in node.model_fields:
                return None
            node = node.model_fields[part].annotation
        elif typing.get_origin(node) in (list, dict):
            node = typing.get_args(node)[-1]
        else:
            return None
    node = unwrap(node)
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None
