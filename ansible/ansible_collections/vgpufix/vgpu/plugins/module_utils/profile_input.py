# -*- coding: utf-8 -*-
# Copyright: vgpu-fix contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Shared by the vgpufix.vgpu modules: the profile options, and loading the profile they name or ship."""

from __future__ import annotations

PROFILE_LABEL = "profile_content"  # how errors in a shipped profile name their source
PROFILE_OPTIONS = dict(
    profile=dict(type="str"),
    profile_content=dict(type="str"),
    vars=dict(type="dict", default={}, aliases=["variables"]),
)
MUTUALLY_EXCLUSIVE = [["profile", "profile_content"]]


def _text(name, value):
    from fixer.errors import InvalidInput

    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise InvalidInput(f"vars.{name}: a profile variable takes a single value, not a {type(value).__name__}")
    return str(value)


def load_profile(params, root):
    """The validated profile: shipped content (checked before anything is written), a name or path, or
    neither: the newest applied generation's profile (else h100-vgpu), as the CLI without --profile."""
    from fixer import core

    overrides = {str(k): _text(k, v) for k, v in (params["vars"] or {}).items()}
    if params.get("profile_content"):
        return core.profile_for(root, PROFILE_LABEL, overrides, text=params["profile_content"].encode())
    return core.profile_for(root, params.get("profile"), overrides)
