"""Find and load profiles: YAML with locations, `extends`, `${var}` substitution, --set overrides."""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fixer.errors import ProfileError
from fixer.facts import paths

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped_profiles"
if not SHIPPED_DIR.is_dir():  # editable install: profiles/ sits beside the package
    SHIPPED_DIR = Path(__file__).resolve().parent.parent / "profiles"
SITE_DIR = "/etc/vgpu-fix/profiles"
VAR_REF = re.compile(r"\$\{([^}]*)\}")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_EXTENDS = 16
MAX_PROFILE_BYTES = 1024 * 1024

Loc = tuple  # a key path into the document, e.g. ("service", "environment", "X")


@dataclass
class Source:
    """One profile document with the file and line of every key path in it."""

    name: str
    path: str
    data: dict
    where: dict[Loc, str]


@dataclass
class Resolved:
    """A profile merged over its parents with variables substituted, ready for validation."""

    name: str
    path: str
    data: dict
    where: dict[Loc, str]
    chain: list[str]


def _site_profiles(root: str) -> dict[str, Path]:
    """The root's site profiles by name, each where the root's symlinks (resolved inside it) lead."""
    found = {}
    for path in paths.matching(root, SITE_DIR, "*.yaml"):
        if paths.is_file(root, path):
            found[posixpath.basename(path)[:-len(".yaml")]] = Path(paths.real_path(root, path) or path)
    return found


def list_profiles(root: str) -> list[tuple[str, str, str]]:
    """(name, origin, file) for every profile found by name; site profiles shadow shipped ones."""
    found = {file.stem: (file.stem, "shipped", str(file)) for file in sorted(SHIPPED_DIR.glob("*.yaml"))}
    found.update({name: (name, "site", str(file)) for name, file in _site_profiles(root).items()})
    return sorted(found.values())


def locate(ref: str, root: str) -> Path:
    if "/" in ref or ref.endswith((".yaml", ".yml")):
        path = Path(ref)
        if path.is_dir():
            inside = ", ".join(sorted(p.name for p in path.glob("*.y*ml"))[:5]) or "it holds no .yaml file"
            raise ProfileError(f"profile {ref} is a directory, not a profile file; give one YAML file in it ({inside})")
        if not os.path.lexists(ref) or not os.path.exists(ref):
            raise ProfileError(f"profile file {ref} does not exist")
        return path  # a regular file or the operator's pipe: read_source says what anything else is
    if not NAME.match(ref):
        raise ProfileError(f"{ref!r} is not a profile name or path")
    site = _site_profiles(root)
    if ref in site:
        return site[ref]
    if (SHIPPED_DIR / f"{ref}.yaml").is_file():
        return SHIPPED_DIR / f"{ref}.yaml"
    known = ", ".join(name for name, _, _ in list_profiles(root)) or "none"
    raise ProfileError(f"no profile named {ref!r} (known: {known})")


def shadowing(ref: str, root: str) -> str:
    """A sentence naming the site profile that `ref` finds when it hides a shipped profile of that name."""
    if not NAME.match(ref) or ref == STDIN:
        return ""
    site = _site_profiles(root).get(ref)
    if site is not None and (SHIPPED_DIR / f"{ref}.yaml").is_file():
        return f"site profile {site}, which shadows the shipped profile {ref}"
    return ""


def _in_site(path: Path, root: str) -> bool:
    """Whether `path` is a profile of a root's own (found by name in ROOT/etc/vgpu-fix/profiles, ROOT not /)."""
    if root == "/":
        return False
    real = paths.real_path(root, SITE_DIR)
    return real is not None and str(path.parent) == real


STDIN = "-"


def read_source(path: Path, positions: bool = True, raw: bytes | None = None, name: str | None = None,
                pipes: bool = False) -> Source:
    """Parse one profile file (or `raw` bytes read elsewhere: stdin, an Ansible task); with
    `positions`, record the position of every key (slower loader). `pipes`: the operator named it, so
    it may be a pipe (`<(…)`); a device or a FIFO of a root never is read."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from fixer.facts.reading import read_file

    if raw is None:
        try:
            raw = read_file(str(path), limit=MAX_PROFILE_BYTES, pipes=pipes)
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(f"{path}: {len(raw)} bytes; a profile may have at most {MAX_PROFILE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 (byte {exc.start})") from None
    # The C-backed safe loader is several times faster; positions come from the round-trip loader,
    # which `load` uses only to explain a profile that failed.
    yaml = YAML(typ="rt" if positions else "safe")
    try:
        doc = yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProfileError(f"{where}: malformed YAML: {problem}") from None
    _check_expansion(doc, path)
    if doc is None or doc == {}:
        raise ProfileError(f"{path}:1:1: the profile is empty; a profile needs at least a name and one setting")
    if not isinstance(doc, dict):
        raise ProfileError(f"{path}:1:1: a profile must be a mapping, not {type(doc).__name__}")
    where: dict[Loc, str] = {}
    data = _plain(doc, (), str(path), where) if positions else doc
    return Source(name=name or path.stem, path=str(path), data=data, where=where)


MAX_EXPANDED_NODES = 100_000  # a profile is a few hundred nodes; aliases must not multiply that


class AliasBomb(ProfileError):
    """YAML aliases that expand without bound; both loaders must refuse it the same way."""


def _check_expansion(doc: Any, path: Path) -> None:
    """Refuse a document whose aliases expand to more than MAX_EXPANDED_NODES nodes (a "billion
    laughs" bomb) or refer to themselves, before anything walks it copy by copy."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise AliasBomb(f"{path}: a YAML alias refers to a node that contains it (recursive alias)")
        open_nodes.add(key)
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_EXPANDED_NODES:
                break
        open_nodes.discard(key)
        sizes[key] = total
        return total

    if size(doc) > MAX_EXPANDED_NODES:
        raise AliasBomb(f"{path}: YAML aliases expand this profile beyond {MAX_EXPANDED_NODES} nodes; "
                           "refusing it (an alias bomb?)")


def _plain(node: Any, loc: Loc, file: str, where: dict[Loc, str]) -> Any:
    """Convert ruamel nodes to plain Python, recording `file:line:col` of each key and item."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            line_col = _key_position(node, key)
            if line_col:
                where[loc + (key,)] = f"{file}:{line_col[0] + 1}:{line_col[1] + 1}"
            out[key] = _plain(value, loc + (key,), file, where)
        return out
    if isinstance(node, list):
        out_list = []
        for index, value in enumerate(node):
            try:
                line, col = node.lc.item(index)
                where[loc + (index,)] = f"{file}:{line + 1}:{col + 1}"
            except (AttributeError, KeyError, TypeError):
                pass
            out_list.append(_plain(value, loc + (index,), file, where))
        return out_list
    if hasattr(node, "__str__") and type(node).__module__.startswith("ruamel"):
        if isinstance(node, bool):
            return bool(node)
        if type(node).__name__ == "OctalInt":
            return f"0{int(node):o}"
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        return str(node)
    return node


def _key_position(node: Any, key: Any) -> tuple[int, int] | None:
    try:
        line, col, _, _ = node.lc.data[key]
        return line, col
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def resolve(ref: str, root: str = "/", overrides: dict[str, str] | None = None, positions: bool = True,
            text: bytes | None = None) -> Resolved:
    """Load `ref` (or the profile document `text`, labelled `ref`) and its `extends` chain, deep-merge
    (child wins), substitute variables."""
    chain: list[Source] = []
    path = Path(ref) if text is not None else locate(ref, root)
    seen: list[str] = []
    while True:
        real = str(path.resolve())
        if real in seen:
            cycle = " -> ".join(Path(p).stem for p in seen + [real])
            raise ProfileError(f"{path}: `extends` cycle: {cycle}")
        if len(seen) >= MAX_EXTENDS:
            raise ProfileError(f"{path}: `extends` chain longer than {MAX_EXTENDS}")
        seen.append(real)
        given = text if not chain else None
        named = not chain and ("/" in ref or ref.endswith((".yaml", ".yml")))  # the operator's own file
        source = read_source(path, positions, raw=given, name=_label_name(ref) if given is not None else None,
                             pipes=named)
        chain.append(source)
        parent = source.data.get("extends")
        if parent is None:
            break
        if not isinstance(parent, str) or not parent:
            raise ProfileError(f"{source.where.get(('extends',), source.path)}: extends must be a profile name")
        site = given is None and not named and _in_site(path, root)
        if site and not NAME.match(parent):
            raise ProfileError(f"{source.where.get(('extends',), source.path)}: a profile of the root {root} may "
                               f"extend only a profile by name, not the path {parent!r}; nothing outside the "
                               "root is read for it")
        here = Path.cwd() if given is not None else Path(source.path).parent
        if site:
            pass  # by name only: the root's own profile, then the shipped one (locate)
        elif ("/" in parent or parent.endswith((".yaml", ".yml"))) and not parent.startswith("/"):
            parent = str(here / parent)
        elif (here / f"{parent}.yaml").is_file():
            parent = str(here / f"{parent}.yaml")
        try:
            path = locate(parent, root)
        except ProfileError as exc:
            raise ProfileError(f"{source.where.get(('extends',), source.path)}: {exc.message}") from None
    data: dict = {}
    where: dict[Loc, str] = {}
    for source in reversed(chain):
        doc = dict(source.data)
        doc.pop("extends", None)
        if isinstance(doc.get("vars"), dict):  # a bare value keeps the type a parent declared
            doc["vars"] = {k: v if isinstance(v, dict) else {"value": v} for k, v in doc["vars"].items()}
        data = _merge(data, doc)
        where.update(source.where)
    data["name"] = chain[0].data.get("name", chain[0].name)
    if "name" not in chain[0].data:
        where[("name",)] = chain[0].path
    data = substitute(data, where, overrides or {}, chain[0].path, root)
    return Resolved(chain[0].name, chain[0].path, data, where, [s.name for s in chain])


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return over


def substitute(data: dict, where: dict[Loc, str], overrides: dict[str, str], origin: str,
               root: str | None = None) -> dict:
    """Expand `${name}` everywhere from `vars` (with --set overrides), each value checked against its type;
    with `root`, a variable whose value is `auto` takes the value fixer.ollama.host_defaults decides there."""
    variables = data.get("vars") or {}
    if not isinstance(variables, dict):
        raise ProfileError(f"{where.get(('vars',), origin)}: vars must be a mapping of name: value")
    unknown = sorted(set(overrides) - set(variables))
    if unknown:
        raise ProfileError(
            f"--set {unknown[0]}: the profile has no variable {unknown[0]!r} "
            f"(it has: {', '.join(sorted(variables)) or 'none'})"
        )
    declared = {str(k): (v if isinstance(v, dict) else {"value": v}) for k, v in variables.items()}
    raw = {k: ("" if d.get("value") is None else _scalar(d.get("value"))) for k, d in declared.items()}
    raw.update(overrides)
    errors: list[str] = []
    values: dict[str, str] = {}

    def at(loc: Loc) -> str:  # a --set value is named as the operator gave it, not by the profile's line
        if len(loc) == 2 and loc[0] == "vars" and loc[1] in overrides:
            return f"--set {loc[1]}={overrides[loc[1]]}"
        return _where(where, loc, origin)

    def value_of(name: str, stack: tuple[str, ...], loc: Loc) -> str:
        if name in values:
            return values[name]
        if name in stack:
            if stack == (name,):
                errors.append(f"{at(loc)}: refers to itself (${{{name}}}); a value cannot be built from itself")
            else:
                errors.append(f"{at(loc)}: variable cycle: {' -> '.join(stack + (name,))}")
            return ""
        if name not in raw:
            errors.append(f"{at(loc)}: undefined variable ${{{name}}}")
            return ""
        values[name] = expand(raw[name], stack + (name,), ("vars", name))
        return values[name]

    def expand(text: str, stack: tuple[str, ...], loc: Loc) -> str:
        if "${" not in text:
            return text
        parts = text.split("$${")
        return "${".join(VAR_REF.sub(lambda m: value_of(m.group(1), stack, loc), p) for p in parts)

    def walk(node: Any, loc: Loc) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, loc + (k,)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, loc + (i,)) for i, v in enumerate(node)]
        if isinstance(node, str):
            return expand(node, (), loc)
        return node

    for name in raw:
        value_of(name, (), ("vars", name))
    named_set = [e for e in errors if e.startswith("--set ")]
    if named_set:  # a --set value that cannot be expanded: that, not the empty result, is the error
        raise ProfileError(named_set[0], details=named_set[1:])
    for name in overrides:  # --set values are checked first, and named as --set
        problem = _type_problem(declared[name], values.get(name, ""))
        if problem:
            raise ProfileError(f"--set {name}: {values.get(name, '')!r} {problem}")
    for name, declaration in declared.items():
        problem = None if name in overrides else _type_problem(declaration, values.get(name, ""))
        if problem:
            errors.append(f"{_where(where, ('vars', name), origin)}: value {values.get(name, '')!r} {problem}")
    if root is not None and not errors:
        _host_defaults(root, declared, values)
    result = walk({k: v for k, v in data.items() if k != "vars"}, ())
    if errors:
        raise ProfileError(f"{origin}: {len(errors)} error(s) in variables", details=sorted(set(errors)))
    result["vars"] = {name: {**declared[name], "value": values[name]} for name in declared}
    return result


def _host_defaults(root: str, declared: dict[str, dict], values: dict[str, str]) -> None:
    """Replace each `auto` value that fixer.ollama.host_defaults knows how to decide; the variable's `auto` says why."""
    from fixer.ollama.host_defaults import RESOLVERS

    for name, resolver in RESOLVERS.items():
        if values.get(name) == "auto":
            values[name], why = resolver(root, values)
            declared[name] = {**declared[name], "auto": f"{values[name]}: {why}"}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_problem(declaration: dict, value: str) -> str | None:
    """The type check of fixer.model.profile for one declared variable; a malformed declaration is left
    to the model's validation (which reports it with its location)."""
    from fixer.model.profile import VAR_TYPES, var_problem

    kind = declaration.get("type", "string")
    if kind not in VAR_TYPES:
        return None
    try:
        return var_problem(kind, value, declaration.get("pattern"), declaration.get("choices"),
                           declaration.get("minimum"), declaration.get("maximum"))
    except (TypeError, ValueError, re.error):
        return None


def _where(where: dict[Loc, str], loc: Loc, origin: str) -> str:
    """The nearest recorded location of a key path, with the path itself for readability."""
    probe = tuple(loc)
    while probe and probe not in where:
        probe = probe[:-1]
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    return f"{where.get(probe, origin)}: {dotted}"


def _label_name(label: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "", Path(label).stem)
    return stem if NAME.match(stem) else "profile"


def load(ref: str, root: str = "/", overrides: dict[str, str] | None = None, text: bytes | None = None):
    """The validated Profile for `ref`, or for the document `text` (stdin, an Ansible task's
    `profile_content`) labelled `ref`; every problem reported with its file, line and key path."""
    from pydantic import ValidationError

    from fixer.model.profile import Profile

    def validated(resolved: Resolved) -> Profile:
        """The profile, noting where it came from (no path: a document given as text), so that apply
        journals it and later runs without --profile find it again (core.applied_profile)."""
        profile = Profile.model_validate(resolved.data)
        path = None if text is not None else os.path.abspath(resolved.path)  # a name: no file-system access
        profile._origin = {"ref": ref, "path": path, "vars": dict(overrides or {})}
        return profile

    try:
        return validated(resolve(ref, root, overrides, positions=False, text=text))
    except AliasBomb:
        raise
    except (ProfileError, ValidationError):
        pass  # explain it with positions: parse again with the round-trip loader
    resolved = resolve(ref, root, overrides, text=text)
    try:
        return validated(resolved)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            loc = tuple(err["loc"]) or _loc_named_in(message)
            if err["type"] == "extra_forbidden":
                message = f"unknown key {loc[-1]!r}" + _did_you_mean(loc)
            lines.append(f"{_where(resolved.where, loc, resolved.path)}: {message}")
        raise ProfileError(
            f"profile {resolved.name} is invalid ({len(lines)} error(s))", details=lines
        ) from None


def _did_you_mean(loc: Loc) -> str:
    """`; did you mean `environment`?` for a misspelt key: a close name at its level, else the same name
    one level down (`environment` at the top means `service.environment`)."""
    import difflib

    from fixer.model.profile import model_at

    here = model_at(loc[:-1])
    names = list(here.model_fields) if here else []
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.75)
    if close:
        return f"; did you mean `{close[0]}`?"
    for name in names:
        below = model_at(loc[:-1] + (name,))
        if below is not None and str(loc[-1]) in below.model_fields:
            return f"; did you mean `{name}.{loc[-1]}`?"
    return ""


def _loc_named_in(message: str) -> Loc:
    """A whole-profile error names its key paths like `symlinks[1]`; point at the last one named."""
    named = re.findall(r"([a-z_]+(?:\.[a-z_]+)*)(?:\[(\d+)\])?(?=[ )]|$)", message.split("(")[-1])
    for dotted, index in reversed(named):
        loc = tuple(dotted.split(".")) + ((int(index),) if index else ())
        if loc[0] in ("symlinks", "files", "service", "ld_so_conf", "udev"):
            return loc
    return ()


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ProfileError(f"--set {pair!r}: expected NAME=VALUE")
        overrides[name] = value
    return overrides


def dump_yaml(data: dict) -> str:
    import io

    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()
