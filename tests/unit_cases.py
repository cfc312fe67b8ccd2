"""The unit-parsing cases of tests/data/unit_parsing.yaml, and how to lay one out under a root."""

from __future__ import annotations

import os

CASES_FILE = os.path.join(os.path.dirname(__file__), "data", "unit_parsing.yaml")
HEADER = "[Service]\nType=exec\nExecStart=/bin/sleep 600\n"  # exec: started means exec'd


def load() -> list[dict]:
    from ruamel.yaml import YAML

    with open(CASES_FILE, encoding="utf-8") as fh:
        return YAML(typ="safe").load(fh)


def unit_name(index: int) -> str:
    return f"parsecase-{index}.service"


def write(root: str, index: int, case: dict) -> str:
    """Write case `index` as a user unit (and its files, renamed per case) under `root`; its unit name."""
    service = case["service"]
    for path, text in (case.get("files") or {}).items():
        own = path.replace(".env", f"-{index}.env")
        service = service.replace(path, own)
        _write(root, own, text)
    _write(root, f"/etc/systemd/user/{unit_name(index)}", HEADER + service)
    return unit_name(index)


def _write(root: str, path: str, text: str) -> None:
    real = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(real), exist_ok=True)
    with open(real, "wb") as fh:
        fh.write(text.encode("utf-8"))


def mismatches(case: dict, environ: dict[str, str]) -> list[str]:
    """What differs between an environment and the case's expectation (empty: it matches)."""
    wrong = [f"{k}={environ.get(k)!r}, expected {v!r}" for k, v in (case.get("env") or {}).items()
             if environ.get(k) != v]
    return wrong + [f"{k} is set ({environ[k]!r}), expected absent" for k in case.get("absent") or [] if k in environ]
