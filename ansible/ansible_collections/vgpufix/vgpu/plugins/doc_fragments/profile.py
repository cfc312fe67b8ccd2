# -*- coding: utf-8 -*-
# Copyright: vgpu-fix contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Documentation of the profile options the vgpufix.vgpu modules share."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  profile:
    description:
      - Profile name (a shipped profile, or one in C(ROOT/etc/vgpu-fix/profiles/)) or the absolute
        path of a profile YAML file on the target.
      - When neither O(profile) nor O(profile_content) is given, the profile (and O(vars)) of the
        newest generation vgpu-fix applied on the host (O(vars) given then override its recorded
        variables), else V(h100-vgpu).
    type: str
  profile_content:
    description:
      - The profile itself, as YAML text, shipped with the play (for example
        C("{{ lookup('ansible.builtin.file', 'profiles/lab.yaml') }}")); it may C(extends) a shipped
        profile. It is validated on the target before anything is written; errors name
        C(profile_content) with line and column.
    type: str
  vars:
    description:
      - Profile variables, as C(vgpu-fix --set NAME=VALUE) would set them (for example C(shim_dir),
        C(cuda_library)). Every name must be a variable the profile declares.
      - Values are passed as strings; booleans become C(true)/C(false).
    type: dict
    default: {}
    aliases: [variables]
"""
