"""What a generation's manifest records of one path: its exact state before (or after) an apply."""

from __future__ import annotations

from dataclasses import dataclass

from fixer.model.path import PathState

KINDS = ("absent", "file", "symlink", "dir", "other")


@dataclass(frozen=True)
class ManifestEntry:
    """One path's recorded state: kind, and per kind its link target, or mode/owner (and a file's sha256).

    `links` notes a file's hard-link count when it had other links (only content is restored); it is not
    part of the state, so two entries of the same state compare equal through `state()`."""

    path: str
    kind: str
    target: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    sha256: str | None = None
    links: int | None = None

    @classmethod
    def of(cls, state: PathState, path: str, links: int | None = None) -> ManifestEntry:
        owned = state.kind in ("file", "dir", "other")
        return cls(path, state.kind, target=state.target if state.kind == "symlink" else None,
                   mode=state.mode if owned else None, uid=state.uid if owned else None,
                   gid=state.gid if owned else None, sha256=state.sha256 if state.kind == "file" else None,
                   links=links)

    @classmethod
    def from_dict(cls, data: dict) -> ManifestEntry:
        return cls(data["path"], data["kind"], data.get("target"), data.get("mode"), data.get("uid"),
                   data.get("gid"), data.get("sha256"), data.get("links"))

    def state(self) -> ManifestEntry:
        """The entry without notes: what to compare with a path's current state."""
        return ManifestEntry(self.path, self.kind, self.target, self.mode, self.uid, self.gid, self.sha256)

    def to_dict(self) -> dict:
        """The manifest's JSON shape: only the keys the kind has (a symlink: target; a file: mode, owner, sha256)."""
        out: dict = {"path": self.path, "kind": self.kind}
        if self.kind == "symlink":
            out["target"] = self.target
        if self.kind in ("file", "dir", "other"):
            out.update(mode=self.mode, uid=self.uid, gid=self.gid)
        if self.kind == "file":
            out["sha256"] = self.sha256
        if self.links is not None:
            out["links"] = self.links
        return out
