"""Generations: the exact before-state of every touched path, recorded before the first change."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass

from fixer.apply import crashpoints, writes
from fixer.errors import Conflict, FixerError, InvalidInput, RollbackFailed
from fixer.facts.paths import STATE_DIR, PathState, check_path, host_path, parent_problem, read_state
from fixer.facts.reading import open_typed, read_file
from fixer.model.manifest import KINDS, ManifestEntry

# Files ldconfig derives from the rest: restored byte for byte only while nobody rebuilt them since.
DERIVED = ("/etc/ld.so.cache", "/etc/ld.so.cache~", "/var/cache/ldconfig/aux-cache", "/var/cache/ldconfig/aux-cache~")
OPEN_STATUSES = ("pending", "rolling_back")


def _canonical(data: dict) -> bytes:
    """Compact JSON: the C encoder only runs without `indent` (5x faster on a 50,000-path manifest)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Damaged:
    """A generation whose manifest cannot be trusted: listed and named, never used to restore."""

    number: int
    reason: str
    status = "damaged"

    def story(self) -> str:
        """The one sentence every command (history, history show, plan, rollback and its dry run) says."""
        return f"generation {self.number} is damaged and cannot be used: {self.reason}"

    def summary(self) -> dict:
        return {"generation": self.number, "status": self.status, "created": "", "profile": "", "user": "",
                "changes": 0, "paths": [], "proof": None, "error": self.reason}


@dataclass
class Generation:
    number: int
    directory: str
    manifest: dict

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @functools.cached_property
    def entries(self) -> list[ManifestEntry]:
        """Each recorded path's before-state, in the order apply touched them (parsed once: a manifest's
        entries never change after `begin`)."""
        return [ManifestEntry.from_dict(e) for e in self.manifest["entries"]]

    @property
    def after(self) -> list[ManifestEntry]:
        """What the apply left at each path (empty until it finished)."""
        return [ManifestEntry.from_dict(e) for e in self.manifest.get("after") or []]

    def summary(self) -> dict:
        m = self.manifest
        return {
            "generation": self.number,
            "status": m["status"],
            "created": m["created"],
            "profile": m["profile"],
            "user": m["user"],
            "changes": len(m.get("changes", [])),
            "paths": [e["path"] for e in m["entries"]],
            "proof": _proof(m.get("verify")),
        }


def _proof(verify: dict | None) -> dict | None:
    """The proof levels of the verify an apply recorded (None: not run); a verdict recorded before proof
    levels existed has outcome None, never a pass."""
    if verify is None:
        return None
    return {key: verify.get(key) for key in ("asked", "reached", "outcome")}


class Journal:
    """ROOT/var/lib/vgpu-fix: numbered generations (manifest + blobs) and an append-only audit log."""

    def __init__(self, root: str):
        self.root = root
        self.directory = host_path(root, STATE_DIR)

    def present(self) -> bool:
        """Whether the state dir exists; one rule for readers and writers alike: a symlink at it or
        above it (or at its generations/) is a Conflict, never followed."""
        problem = parent_problem(self.root, STATE_DIR + "/generations/x")
        if problem:
            raise Conflict(f"{STATE_DIR}: {problem}")
        return os.path.isdir(self.directory)

    def ensure(self) -> None:
        """Create the state dir (0700) without following symlinks; unusable storage is a Conflict."""
        self.present()
        try:
            for parent in ("/var", "/var/lib", STATE_DIR, STATE_DIR + "/generations"):
                writes.make_dir(self.root, parent, 0o755 if parent in ("/var", "/var/lib") else 0o700)
            if os.stat(self.directory).st_mode & 0o077:
                writes.chmod_dir(self.root, STATE_DIR, 0o700)
        except OSError as exc:
            raise Conflict(f"{self.directory}: cannot use the state directory: {exc.strerror}; "
                           "nothing was changed") from None

    @property
    def lock_path(self) -> str:
        return os.path.join(self.directory, "lock")

    def _numbers(self) -> list[int]:
        base = os.path.join(self.directory, "generations")
        if not os.path.isdir(base) or os.path.islink(base):
            return []
        return sorted(int(name) for name in os.listdir(base) if name.isdigit())

    def _abandoned(self, number: int) -> bool:
        """A generation whose `begin` died before its first manifest: nothing was changed for it."""
        manifest = os.path.join(self.directory, "generations", f"{number:04d}", "manifest.json")
        return not os.path.lexists(manifest) and not os.path.lexists(manifest + ".sha256")

    def scan(self) -> tuple[list[Generation], list[Damaged]]:
        """Every generation that began, split into the intact ones and the damaged ones (with why)."""
        intact, damaged = [], []
        for number in self._numbers():
            if self._abandoned(number):
                continue
            try:
                intact.append(self.load(number))
            except InvalidInput as exc:
                damaged.append(Damaged(number, exc.message))
        return intact, damaged

    def generations(self) -> list[Generation]:
        """The intact generations; a damaged one never hides the others (see `scan`)."""
        return self.scan()[0]

    def damaged(self) -> list[Damaged]:
        return self.scan()[1]

    def tidy(self) -> None:
        """Under the lock: drop abandoned generations and finish manifest saves a crash interrupted."""
        for number in self._numbers():
            directory = os.path.join(self.directory, "generations", f"{number:04d}")
            if self._abandoned(number):
                shutil.rmtree(directory, ignore_errors=True)
                continue
            try:
                generation = self.load(number)
            except InvalidInput:
                continue  # damaged: left exactly as found for the operator to inspect
            manifest = os.path.join(directory, "manifest.json")
            if os.path.exists(manifest + ".tmp") or os.path.exists(manifest + ".sha256.tmp"):
                self.save(generation)

    def load(self, number: int) -> Generation:
        directory = os.path.join(self.directory, "generations", f"{number:04d}")
        manifest_path = os.path.join(directory, "manifest.json")
        try:
            recorded = read_file(manifest_path + ".sha256", follow=False).decode("ascii", "replace").strip()
            raw = _read_if(manifest_path)
            pending = _read_if(manifest_path + ".tmp") if raw is None or hashlib.sha256(raw).hexdigest() != recorded else None
        except OSError as exc:  # missing, a symlink, a FIFO or device, beyond the cap: never followed or waited on
            raise InvalidInput(f"{exc.filename}: journal generation {number} is unreadable: {exc.strerror}") from None
        if raw is None or hashlib.sha256(raw).hexdigest() != recorded:
            # A crash between the checksum's rename and the manifest's leaves the new manifest, complete
            # and fsynced, in manifest.json.tmp: roll that save forward. Anything else is tampering.
            if pending is not None and hashlib.sha256(pending).hexdigest() == recorded:
                raw = pending
            elif raw is None:
                raise InvalidInput(f"{manifest_path}: journal generation {number} is unreadable (missing)")
            else:
                raise InvalidInput(f"{manifest_path}: journal generation {number} was modified "
                                   "(checksum mismatch); refusing to use it")
        try:
            manifest = json.loads(raw)
            _check_manifest(manifest)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(f"{manifest_path}: journal generation {number} is not a valid manifest: {exc}") from None
        return Generation(number, directory, manifest)

    def open_generations(self) -> list[Generation]:
        """Generations whose apply or rollback was interrupted."""
        return [g for g in self.generations() if g.status in OPEN_STATUSES]

    def begin(self, profile: str, paths: list[str], changes: list[dict], service: dict,
              applied: dict | None = None) -> Generation:
        """Record the before-state of `paths` (content blobs first, manifest last) with status pending;
        `applied`: the profile as applied and where it came from (see core.applied_profile)."""
        self.ensure()
        self.tidy()
        numbers = self._numbers()
        number = (numbers[-1] + 1) if numbers else 1
        directory = os.path.join(self.directory, "generations", f"{number:04d}")
        try:
            os.mkdir(directory, 0o700)
            os.mkdir(os.path.join(directory, "blobs"), 0o700)
            entries = []
            for path in paths:
                state = read_state(self.root, path)
                if state.kind == "file":
                    self._store_blob(directory, state.data)
                    crashpoints.hit("journal:blob")
                # A file's other hard links: the rename that replaces it leaves them behind (noted, not restored).
                links = state.links if state.kind == "file" and state.links > 1 else None
                entries.append(ManifestEntry.of(state, path, links).to_dict())
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise Conflict(f"{directory}: cannot record the journal: {exc.strerror}; nothing was changed") from None
        manifest = {
            "format_version": 1,
            "generation": number,
            "status": "pending",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "profile": profile,
            "user": _user(),
            "root": self.root,
            "changes": changes,
            "service": service,
            "entries": entries,
            **(applied or {}),
        }
        generation = Generation(number, directory, manifest)
        try:  # a manifest this journal could not read back would wedge every later run: refuse it now
            _check_manifest(json.loads(_canonical(manifest)))
        except (ValueError, TypeError, KeyError) as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise InvalidInput(f"{directory}: refusing to record an unusable manifest ({exc}); nothing was changed") from None
        crashpoints.hit("journal:before-manifest")
        try:
            self.save(generation)
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise Conflict(f"{directory}: cannot record the journal: {exc.strerror}; nothing was changed") from None
        crashpoints.hit("journal:written")
        return generation

    def _store_blob(self, directory: str, data: bytes) -> None:
        blob = os.path.join(directory, "blobs", hashlib.sha256(data).hexdigest())
        if os.path.exists(blob):
            return
        _write_synced(blob, data)

    def save(self, generation: Generation) -> None:
        """Both files are written and fsynced as temps first, then renamed checksum first: a crash
        between the renames leaves a complete manifest.json.tmp matching the checksum (see `load`)."""
        raw = _canonical(generation.manifest)
        manifest = os.path.join(generation.directory, "manifest.json")
        pairs = ((manifest + ".sha256", hashlib.sha256(raw).hexdigest().encode()), (manifest, raw))
        for name, data in pairs:
            _write_synced(name + ".tmp", data)
        os.rename(manifest + ".sha256.tmp", manifest + ".sha256")
        crashpoints.hit("journal:save-between-renames")
        os.rename(manifest + ".tmp", manifest)
        writes.fsync_dir(generation.directory)

    def set_status(self, generation: Generation, status: str, **extra) -> None:
        generation.manifest["status"] = status
        generation.manifest.update(extra)
        self.save(generation)

    def record_after(self, generation: Generation) -> None:
        generation.manifest["after"] = [ManifestEntry.of(read_state(self.root, e.path), e.path).to_dict()
                                        for e in generation.entries]

    def drifted(self, generation: Generation) -> list[str]:
        """Paths whose state differs from what the generation left behind."""
        return [e.path for e in generation.after
                if e.path not in DERIVED and ManifestEntry.of(read_state(self.root, e.path), e.path) != e]

    def restore(self, generation: Generation, done: list[str], notes: list[str], step=None) -> bool:
        """Put every recorded path back to its before-state, innermost first, appending each path
        changed to `done` as it goes (so a failure part-way still tells what was restored) and what
        could not be restored exactly to `notes`.

        Returns whether a derived cache was rebuilt by someone else since the apply (then the caller
        reruns ldconfig instead of restoring stale bytes).
        """
        rebuild = False
        self.verify_blobs(generation)
        entries = generation.entries
        # temp files an interrupted write left keep new dirs non-empty
        writes.discard_temps(self.root, [e.path for e in entries])
        dirty: set[str] = set()  # each changed directory is fsynced once, before the caller records the status
        try:
            for entry in reversed(entries):
                rebuild = self._restore_one(generation, entry, done, notes, dirty, step) or rebuild
        finally:
            writes.sync_dirs(self.root, dirty)
        return rebuild

    def _restore_one(self, generation: Generation, entry: ManifestEntry, done: list[str], notes: list[str],
                     dirty: set[str], step) -> bool:
        """Restore one entry (see `restore`); True when it is a derived cache someone else rebuilt."""
        crashpoints.hit("restore:entry")
        path = entry.path
        if self.rebuilt_since(generation, entry):
            return True
        if self._restore_entry(generation, entry, dirty):
            done.append(path)
            if entry.links:
                notes.append(f"{path}: content, mode and owner restored as a new file; it was one of "
                             f"{entry.links} hard links before the apply, and that link is not restored")
            crashpoints.hit("restore:entry-done")
        if step is not None:
            step(path)
        return False

    def rebuilt_since(self, generation: Generation, entry: ManifestEntry) -> bool:
        """Whether ldconfig's cache at `entry` was rebuilt by someone else since the apply (neither what
        the apply left nor already restored by an earlier, interrupted restore): then the rollback reruns
        ldconfig instead of restoring stale bytes."""
        if entry.path not in DERIVED:
            return False
        after = {e.path: e for e in generation.after}
        current = ManifestEntry.of(read_state(self.root, entry.path), entry.path)
        return entry.path in after and current != after[entry.path] and current != entry.state()

    def unrestored(self, generation: Generation) -> list[str]:
        """Recorded paths (ldconfig's caches aside) that are not in their before-state now."""
        missing = []
        for entry in generation.entries:
            if entry.path in DERIVED:
                continue
            try:
                if ManifestEntry.of(read_state(self.root, entry.path), entry.path) != entry.state():
                    missing.append(entry.path)
            except (OSError, FixerError):
                missing.append(entry.path)
        return missing

    def verify_blobs(self, generation: Generation) -> None:
        """Every blob the restore needs is present and intact; checked before anything is touched."""
        for entry in generation.entries:
            if entry.kind == "file":
                self._blob(generation, entry.sha256)

    def _restore_entry(self, generation: Generation, entry: ManifestEntry, dirty: set[str] | None = None) -> bool:
        path, kind = entry.path, entry.kind
        current = read_state(self.root, path)
        if ManifestEntry.of(current, path) == entry.state():
            return False
        if kind == "other":  # vgpu-fix never touches one (the plan refuses), so this is someone else's change
            raise RollbackFailed(f"{path}: was a FIFO, socket or device node and is now a {current.describe()}; "
                                 "vgpu-fix cannot recreate special files")
        if kind == "absent":
            if current.kind == "dir" and os.listdir(host_path(self.root, path)):
                return False
            writes.remove(self.root, path, dirty)
        elif kind == "file":
            data = self._blob(generation, entry.sha256)
            if current.kind == "dir":
                raise RollbackFailed(f"{path}: a directory now stands where a file must be restored")
            writes.write_file(self.root, path, data, entry.mode, entry.uid, entry.gid, dirty)
        elif kind == "symlink":
            if current.kind == "dir":
                raise RollbackFailed(f"{path}: a directory now stands where a symlink must be restored")
            writes.write_symlink(self.root, path, entry.target, dirty)
        elif kind == "dir":
            if current.kind == "absent":
                writes.make_dir(self.root, path, entry.mode, dirty)
            elif current.kind != "dir":
                writes.remove(self.root, path, dirty)
                writes.make_dir(self.root, path, entry.mode, dirty)
            writes.chmod_dir(self.root, path, entry.mode)
        return True

    def recorded_state(self, generation: Generation, entry: ManifestEntry) -> PathState:
        """The before-state one manifest entry records, as a PathState (a missing blob reads as empty)."""
        kind = entry.kind
        if kind == "symlink":
            return PathState("symlink", target=entry.target)
        if kind == "file":
            try:
                data = self._blob(generation, entry.sha256)
            except FixerError:
                data = b""
            return PathState("file", data=data, mode=entry.mode, uid=entry.uid, gid=entry.gid)
        if kind == "dir":
            return PathState("dir", mode=entry.mode, uid=entry.uid, gid=entry.gid)
        return PathState(kind)

    def _blob(self, generation: Generation, sha: str) -> bytes:
        blob = os.path.join(generation.directory, "blobs", sha)
        try:
            data = read_file(blob, follow=False)
        except FileNotFoundError:
            raise InvalidInput(f"{blob}: journal blob missing; generation {generation.number} cannot be restored") from None
        except OSError as exc:
            raise InvalidInput(f"{blob}: journal blob unreadable ({exc.strerror}); generation {generation.number} "
                               "cannot be restored") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise InvalidInput(f"{blob}: journal blob was modified (checksum mismatch)")
        return data

    def audit(self, event: dict) -> None:
        self.ensure()
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "user": _user(), **event}, sort_keys=True)
        fd = open_typed(os.path.join(self.directory, "audit.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                        verb="write")
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_record(self, name: str, doc: dict) -> None:
        """Replace state file `name` (e.g. last-verify.json) atomically: temp file, fsync, rename."""
        path = os.path.join(self.directory, name)
        _write_synced(path + ".tmp", json.dumps(doc, sort_keys=True, indent=1).encode())
        os.rename(path + ".tmp", path)
        writes.fsync_dir(self.directory)

    def read_record(self, name: str) -> dict | None:
        raw = _read_if(os.path.join(self.directory, name))
        try:
            return json.loads(raw) if raw is not None else None
        except ValueError:
            return None

    def audit_lines(self) -> list[dict]:
        path = os.path.join(self.directory, "audit.log")
        if not os.path.lexists(path):
            return []
        text = read_file(path, follow=False).decode("utf-8", errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _write_synced(path: str, data: bytes) -> None:
    """Write a private (0600) state file in full and fsync it; never through a symlink."""
    fd = open_typed(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, verb="write")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_if(path: str) -> bytes | None:
    """A state file's bytes, or None when it is absent; a symlink, FIFO or device there is Refused."""
    try:
        return read_file(path, follow=False)
    except FileNotFoundError:
        return None


def _check_manifest(manifest: dict) -> None:
    """Refuse a manifest whose entries could make a restore write outside the root."""
    if not isinstance(manifest, dict) or manifest.get("status") is None:
        raise ValueError("no status")
    for entry in manifest["entries"]:
        path = entry["path"]
        try:
            check_path(path)
        except ValueError as exc:
            raise ValueError(f"entry path {path!r} is not a normal absolute path ({exc})") from None
        if entry["kind"] not in KINDS:
            raise ValueError(f"entry {path}: unknown kind {entry['kind']!r}")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
