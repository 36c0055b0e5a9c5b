"""A session's workspace: the one directory its tools may touch, and snapshots to undo what they wrote.

Every path a tool receives is resolved here first. A path that would leave the workspace — through
``..``, by being absolute, or through a symlink that points out — is refused with a ``ValueError``
naming it, before anything is read or written.

Snapshots make the file tools reversible: before a write, ``snapshot`` records whether the file existed
and its bytes; a rollback hands the snapshot to ``restore``, which puts the old content back or deletes
the file that the write created. Because a compensation may run in another process (crash recovery) and
a call's result is logged as JSON, snapshots are kept on disk next to the workspace — outside it, so the
sandboxed commands cannot tamper with them — and the tool's result carries only the snapshot's id.

```python
ws = Workspace.for_session(Path(".corral/workspaces"), "s-123")
snap = ws.snapshot("notes.txt")
ws.resolve("notes.txt").write_text("new")
ws.restore(snap)            # notes.txt is back as it was, or gone if it did not exist
```
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from pathlib import Path, PurePosixPath
from typing import Any

_SESSION_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_SNAPSHOT_ID = re.compile(r"[0-9a-f]{32}")


class Workspace:
    """One session's directory. It is created on first use; nothing outside it is reachable by path."""

    def __init__(self, root: Path | str, *, snapshots: Path | str | None = None) -> None:
        root = Path(root)
        self._root = root if root.is_absolute() else Path.cwd() / root
        default = self._root.parent / ".snapshots" / self._root.name
        self._snapshots = Path(snapshots) if snapshots is not None else default

    @classmethod
    def for_session(cls, base: Path | str, session_id: str) -> Workspace:
        """The workspace of ``session_id`` under ``base``: ``<base>/<session_id>/``."""
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            raise ValueError(
                f"session id {session_id!r} cannot name a workspace directory: use letters, digits, "
                "'.', '_' and '-', not starting with '.' or '-'"
            )
        return cls(Path(base) / session_id)

    # ---------------------------------------------------------------------------------------- paths

    @property
    def root(self) -> Path:
        """The workspace directory, real path, created on demand."""
        self._root.mkdir(parents=True, exist_ok=True)
        return self._root.resolve()

    def __fspath__(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"Workspace({str(self._root)!r})"

    def resolve(self, rel_path: str | os.PathLike[str]) -> Path:
        """The real path of ``rel_path`` inside the workspace; ``ValueError`` if it would lead outside.

        Symlinks are followed (they may point anywhere inside the workspace) and the result is checked
        after following them, so a link to ``/etc`` is refused like ``../etc`` is.
        """
        raw = os.fspath(rel_path)
        if not isinstance(raw, str):
            raise ValueError(f"path {raw!r} must be a string")
        if "\x00" in raw:
            raise ValueError(f"path {raw!r} contains a NUL byte")
        if os.path.isabs(raw) or raw.startswith("~"):
            raise ValueError(
                f"path {raw!r} is absolute; use a path relative to the workspace (e.g. 'notes/todo.txt')"
            )
        root = self.root
        try:
            candidate = (root / raw).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
            raise ValueError(f"path {raw!r} cannot be resolved: {exc}") from None
        if candidate != root and not candidate.is_relative_to(root):
            lexical = Path(os.path.normpath(root / raw))
            via_link = lexical == root or lexical.is_relative_to(root)
            raise ValueError(
                f"path {raw!r} leads outside the workspace{' through a symlink' if via_link else ''}; refused"
            )
        return candidate

    def relative(self, path: Path) -> str:
        """``path`` (inside the workspace) as the workspace-relative POSIX path tools report."""
        rel = path.relative_to(self.root)
        return PurePosixPath(*rel.parts).as_posix() if rel.parts else "."

    # ------------------------------------------------------------------------------------ snapshots

    def snapshot(self, rel_path: str | os.PathLike[str]) -> dict[str, Any]:
        """What ``rel_path`` holds now: ``{path, existed, content (bytes|None), mode, created_dirs}``.

        ``created_dirs`` lists the missing parent directories (deepest first) a write would create,
        so restoring an absence also removes them when they are empty.
        """
        target = self.resolve(rel_path)
        if target.is_dir():
            raise ValueError(f"path {os.fspath(rel_path)!r} is a directory, not a file")
        existed = target.exists()
        missing: list[str] = []
        if not existed:
            parent = target.parent
            root = self.root
            while parent != root and not parent.exists():
                missing.append(self.relative(parent))
                parent = parent.parent
        return {
            "path": self.relative(target),
            "existed": existed,
            "content": target.read_bytes() if existed else None,
            "mode": stat.S_IMODE(target.stat().st_mode) if existed else None,
            "created_dirs": missing,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Put ``snapshot`` back: the old bytes (and mode), or no file if there was none. Idempotent."""
        rel = snapshot["path"]
        target = self.resolve(rel)
        if snapshot["existed"]:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{target.name}.corral-restore-{secrets.token_hex(4)}"
            try:
                tmp.write_bytes(snapshot["content"] or b"")
                if snapshot.get("mode") is not None:
                    os.chmod(tmp, snapshot["mode"])
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            return
        if target.is_dir() and not target.is_symlink():
            raise ValueError(f"cannot restore {rel!r}: a directory now stands where no file was")
        target.unlink(missing_ok=True)
        for rel_dir in snapshot.get("created_dirs") or ():
            try:
                self.resolve(rel_dir).rmdir()
            except (OSError, ValueError):
                break  # not empty (something else was put there since), or gone: leave the rest

    # Snapshots kept on disk, by id, so a compensation in another process can find them.

    def save_snapshot(self, snapshot: dict[str, Any]) -> str:
        """Keep ``snapshot`` durably (outside the workspace) and return its id."""
        snapshot_id = secrets.token_hex(16)
        self._snapshots.mkdir(parents=True, exist_ok=True)
        meta = {k: v for k, v in snapshot.items() if k != "content"}
        if snapshot["existed"]:
            _write_durably(self._snapshots / f"{snapshot_id}.bin", snapshot["content"] or b"")
        _write_durably(self._snapshots / f"{snapshot_id}.json", json.dumps(meta).encode())
        return snapshot_id

    def load_snapshot(self, snapshot_id: str) -> dict[str, Any]:
        """The snapshot saved as ``snapshot_id``; ``ValueError`` if there is none."""
        if not isinstance(snapshot_id, str) or not _SNAPSHOT_ID.fullmatch(snapshot_id):
            raise ValueError(f"{snapshot_id!r} is not a snapshot id")
        try:
            meta = json.loads((self._snapshots / f"{snapshot_id}.json").read_bytes())
        except FileNotFoundError:
            raise ValueError(f"snapshot {snapshot_id} is not kept for workspace {self._root}") from None
        meta["content"] = (self._snapshots / f"{snapshot_id}.bin").read_bytes() if meta["existed"] else None
        return meta


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
