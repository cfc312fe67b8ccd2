#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: vgpu-fix contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Ansible module: vgpu-fix's read-only status of a host as the `vgpu_fix` fact."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vgpu_fix_facts
short_description: vgpu-fix's status of a host (Ollama version, drift, last verify, watch) as facts
version_added: "0.2.0"
description:
  - Returns what C(vgpu-fix status --json) reports, as the fact C(vgpu_fix) - the installed Ollama's
    version and discovery generation, the newest generation vgpu-fix applied, drift against the
    profile, the last verify verdict (time, backend, cause) and the upgrade watch's state.
  - Reads only; optionally writes the Prometheus textfile of C(vgpu-fix status --prometheus).
author:
  - vgpu-fix contributors (!UNKNOWN)
requirements:
  - vgpu-fix (the C(fixer) package) in the target's Python
extends_documentation_fragment:
  - vgpufix.vgpu.profile
options:
  root:
    description:
      - Directory that stands for C(/). Leave the default on real hosts.
    type: path
    default: /
  prometheus:
    description:
      - Also write node-exporter textfile metrics (C(vgpu_fix_verify_ok), C(vgpu_fix_verify_level),
        C(vgpu_fix_verify_asked_level), C(vgpu_fix_last_verify_timestamp_seconds), C(vgpu_fix_ollama_info),
        C(vgpu_fix_drift), C(vgpu_fix_generation), C(vgpu_fix_watch_enabled); see docs/json.md) to this
        file on the target, atomically.
    type: path
attributes:
  check_mode:
    description: Reads the same facts; the Prometheus textfile is not written.
    support: full
  diff_mode:
    description: Changes nothing, so there is nothing to diff.
    support: none
  facts:
    description: Sets the C(vgpu_fix) fact.
    support: full
"""

EXAMPLES = r"""
- name: Which hosts really run CUDA
  vgpufix.vgpu.vgpu_fix_facts:
    profile: h100-vgpu

- name: Report the fleet
  ansible.builtin.debug:
    msg: >-
      {{ inventory_hostname }}: Ollama {{ vgpu_fix.ollama.version or 'unknown' }},
      verify {{ (vgpu_fix.last_verify.outcome ~ ' at ' ~ (vgpu_fix.last_verify.reached or 'no level')
                 ~ ' of ' ~ vgpu_fix.last_verify.asked) if vgpu_fix.last_verify else 'never run' }},
      drift {{ vgpu_fix.drift.pending }}
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to the host.
  returned: always
  type: dict
  contains:
    vgpu_fix:
      description:
        - The document of C(vgpu-fix status --json) (see docs/json.md); C(last_verify) and C(applied)
          are null where vgpu-fix never verified or applied anything on the host. C(last_verify.outcome)
          is V(passed) only when the proof level asked (C(asked)) was reached (C(reached)).
      returned: always
      type: dict
      sample:
        profile: h100-vgpu
        ollama: {generation: runner-engine, version: 0.13.5, how: binary}
        applied: {generation: 3, profile: h100-vgpu, created: "2026-06-01T10:00:00+0000"}
        drift: {pending: 0, conflicts: 0, paths: []}
        last_verify: {ok: true, outcome: passed, asked: service, reached: service, not_reached: [],
                      backend: cuda_v12/libggml-cuda.so, cause: null, time: "2026-06-01T10:00:05+0000"}
        watch: {unit: vgpu-fix-watch.path, installed: true, enabled: true, active: active}
"""

import json
import sys
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.vgpufix.vgpu.plugins.module_utils.profile_input import (
    MUTUALLY_EXCLUSIVE,
    PROFILE_OPTIONS,
    load_profile,
)

try:
    from fixer import core
    from fixer.errors import FixerError, host_conflict
    from fixer.render import dumps, result
except ImportError:
    FIXER_IMPORT_ERROR = traceback.format_exc()
else:
    FIXER_IMPORT_ERROR = None


def _fail(module, exc):
    module.fail_json(msg=exc.message + (": " + "; ".join(exc.details) if exc.details else ""), errors=exc.details)


def main():
    module = AnsibleModule(argument_spec=dict(**PROFILE_OPTIONS, root=dict(type="path", default="/"),
                                              prometheus=dict(type="path")),
                           mutually_exclusive=MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    if FIXER_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("vgpu-fix") + f" (in {sys.executable})", exception=FIXER_IMPORT_ERROR)
    root = module.params["root"]
    try:
        root = core.resolve_root(root, name="root")
        profile = load_profile(module.params, root)
        summary = core.status(root, profile)
        doc = json.loads(dumps(result("status", profile=profile.name, root=root, changed=False, failed=False,
                                      msg="", **summary)))
    except OSError as exc:  # reading the host, not writing the textfile: said as the CLI says it
        _fail(module, host_conflict(exc, root))
    except FixerError as exc:
        _fail(module, exc)
    if module.params["prometheus"] and not module.check_mode:
        try:
            core.write_textfile(module.params["prometheus"], core.prometheus_text(doc))
        except OSError as exc:
            module.fail_json(msg=f"{module.params['prometheus']}: cannot write: {exc.strerror or exc}")
        except FixerError as exc:
            _fail(module, exc)
    facts = {k: doc[k] for k in ("profile", "root", "ollama", "applied", "drift", "last_verify", "watch")}
    module.exit_json(changed=False, ansible_facts={"vgpu_fix": facts})


if __name__ == "__main__":
    main()
