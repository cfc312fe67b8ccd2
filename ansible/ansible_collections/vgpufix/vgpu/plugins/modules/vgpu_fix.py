#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: vgpu-fix contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Ansible module: run vgpu-fix's Python API on the target (plan, apply, verify, roll back)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vgpu_fix
short_description: Make Ollama load its CUDA backend on virtual-GPU hosts with vgpu-fix
version_added: "0.1.0"
description:
  - Brings a host to the state a vgpu-fix profile describes (shim symlinks, the Ollama service
    drop-in, C(ld.so.conf.d) entry, managed and forbidden files, C(/etc/ld.so.preload) entries),
    through vgpu-fix's journaled, atomic apply; optionally proves the CUDA backend loads and rolls
    the change back by itself when it does not.
  - Rolls back earlier applies (O(state=rolled_back)) or only checks that the backend loads
    (O(state=verified)).
  - Under C(--check) it plans and reports exactly the changes a real run would make, writing
    nothing. Under C(--diff) it returns one before/after entry per file, symlink and
    C(ld.so.conf.d) entry, headed by the path.
  - Runs vgpu-fix's Python API on the target, so the target's Python (the one Ansible uses, see
    C(ansible_python_interpreter)) must have vgpu-fix installed (the wheel you ship; the
    C(vgpufix.vgpu.deploy) role does it, and installs from a package index only when asked to).
author:
  - vgpu-fix contributors (!UNKNOWN)
requirements:
  - vgpu-fix (the C(fixer) package) in the target's Python
extends_documentation_fragment:
  - vgpufix.vgpu.profile
options:
  state:
    description:
      - V(applied) makes the host match the profile.
      - V(rolled_back) restores the before-state of the newest generation (or of every generation
        from O(rollback_to) on). Once that generation is rolled back, the task reports no change.
      - V(verified) changes nothing and fails unless the CUDA backend loads (needs a vgpu-fix
        with its verify step).
    type: str
    choices: [applied, rolled_back, verified]
    default: applied
  root:
    description:
      - Directory that stands for C(/). Leave the default on real hosts; other values serve
        images, chroots and tests.
    type: path
    default: /
  restart:
    description:
      - Restart the unit after its drop-in changed (only where systemd manages O(root)).
      - Set V(false) to leave the restart to a handler; the role does that.
    type: bool
    default: true
  verify:
    description:
      - After a change, prove the CUDA backend loads; when it does not, every change is rolled back
        and the task fails, reporting the rollback.
      - Skipped with a warning when the installed vgpu-fix has no verify step.
    type: bool
    default: true
  probe:
    description:
      - Let verification execute the root's own files (C(ollama), C(libggml-*.so), preloads) to prove
        the backend loads, as C(vgpu-fix --probe/--no-probe).
      - Unset, probes run on the live root C(/) only. Any other O(root) is untrusted data; its files
        run only with V(true), and then only as O(probe_user) in new user, PID, network and mount
        namespaces, read-only.
      - Without probes a root other than C(/) reaches only the V(files) proof level, so the task is
        refused before any change unless O(level=files) (or O(verify=false)).
    type: bool
  probe_user:
    description:
      - For a O(root) other than C(/), the local account the probes run the root's files as, as
        C(vgpu-fix --probe-user). Never root. The C(User=) the image's unit names is reported, never
        adopted (it names an account of this machine that the image must not choose).
    type: str
    default: nobody
  level:
    description:
      - The proof level the task requires, as C(vgpu-fix --level); RV(proof) says which was reached.
        V(files) is ELF and loader resolution with nothing executed; V(modeled) runs the root's
        programs sandboxed the way its Ollama runs them; V(service) reads the restarted unit's own
        discovery lines (live root only); V(model) loads a model with C(size_vram > 0) (needs O(model)).
      - Unset, V(service) where the task restarts the unit on the live root, V(model) with O(model),
        else V(modeled). A level asked but not reached fails the task (RV(proof.outcome) V(not_proven)).
    type: str
    choices: [files, modeled, service, model]
  service_check:
    description:
      - After restarting the unit on the live root, judge by the restarted service's own discovery
        result in its journal; a CPU fallback, a crash loop or no result in time rolls back.
    type: bool
    default: true
  service_timeout:
    description:
      - Seconds to wait for the restarted service's discovery result (default, the budget Ollama's
        own discovery has on the host, plus start-up).
    type: float
  model:
    description:
      - Also load this model through the service's API and require C(size_vram > 0) (the V(model) level).
    type: str
  full_reports:
    description:
      - Return the full verify reports (every check's evidence) in RV(verify) and
        RV(verify_after_rollback). Off, they hold only the verdict, so a failing host's task output stays short.
    type: bool
    default: false
  force:
    description:
      - With O(state=applied), replace paths of the wrong type (a file where a symlink belongs),
        journaling them first. With O(state=rolled_back), roll back even though managed paths were
        edited since the apply.
    type: bool
    default: false
  rollback_to:
    description:
      - With O(state=rolled_back), roll back every applied generation numbered O(rollback_to) or
        higher (see RV(generation) and C(vgpu-fix history)).
    type: int
  lock_timeout:
    description:
      - Seconds to wait for another vgpu-fix run's lock on the same root before failing.
    type: float
    default: 0.0
attributes:
  check_mode:
    description: Plans and reports exactly the changes a real run would make; writes nothing.
    support: full
  diff_mode:
    description: Returns one before/after entry per changing file, symlink and C(ld.so.conf.d) entry.
    support: full
notes:
  - Drift (exit code 4 of C(vgpu-fix plan)) is RV(changed) under C(--check); conflicts, an invalid
    profile, a held lock and a failed verify fail the task without changing the host.
"""

EXAMPLES = r"""
- name: Dry run first (ansible-playbook --check --diff shows each file's diff)
  vgpufix.vgpu.vgpu_fix:
    profile: h100-vgpu
    vars:
      shim_dir: /opt/vgpu/lib
      cuda_library: cuda_v12
  check_mode: true

- name: Converge; a handler restarts Ollama only when something changed
  vgpufix.vgpu.vgpu_fix:
    profile: h100-vgpu
    vars:
      shim_dir: "{{ vgpu_shim_dir }}"
    restart: false
  notify: Restart ollama

- name: A site profile by path, without the post-apply verification
  vgpufix.vgpu.vgpu_fix:
    profile: /etc/vgpu-fix/profiles/lab.yaml
    verify: false

- name: Ship the site's profile with the play (validated on the target before anything is written)
  vgpufix.vgpu.vgpu_fix:
    profile_content: "{{ lookup('ansible.builtin.file', 'profiles/lab.yaml') }}"
    vars:
      shim_dir: /srv/vgpu/lib

- name: Prove the backend loads (changes nothing)
  vgpufix.vgpu.vgpu_fix:
    profile: h100-vgpu
    state: verified

- name: Undo the newest apply
  vgpufix.vgpu.vgpu_fix:
    state: rolled_back

- name: Undo everything from generation 3 on
  vgpufix.vgpu.vgpu_fix:
    state: rolled_back
    rollback_to: 3
"""

RETURN = r"""
format_version:
  description: Version of this result's shape (that of C(vgpu-fix --json)).
  returned: always
  type: int
  sample: 1
command:
  description: The vgpu-fix operation that ran - C(apply), C(plan) (O(state=applied) under C(--check)), C(rollback) or C(verify).
  returned: always
  type: str
  sample: apply
profile:
  description: Name of the profile used; null for O(state=rolled_back).
  returned: always
  type: str
  sample: h100-vgpu
root:
  description: The directory that stood for C(/), resolved.
  returned: always
  type: str
  sample: /
changed:
  description: Whether the host changed (under C(--check), whether it would).
  returned: always
  type: bool
msg:
  description: One line saying what happened, or why the task failed (with the validation lines of an invalid profile).
  returned: always
  type: str
  sample: applied generation 1
generation:
  description:
    - The journal generation written (applied) or rolled back (see C(vgpu-fix history show N)).
    - Null (V(None)) when the task changed nothing, under C(--check) for O(state=applied), and for
      O(state=verified); test it with C(is not none) before using it as a number.
  returned: always
  type: int
  sample: 1
changes:
  description:
    - Every path the plan considered, in order; C(action) is C(create), C(update), C(delete), or
      C(noop) for what is already in place. Same shape as C(vgpu-fix plan --json).
  returned: always
  type: list
  elements: dict
  sample:
    - kind: symlink
      path: /opt/vgpu/lib/libcuda.so.1
      action: create
      before: {kind: absent}
      after: {kind: symlink, target: libvgpu-cuda.so}
      reason: link to libvgpu-cuda.so
verify:
  description:
    - The verify verdict (C(outcome), C(asked), C(reached), C(not_reached), C(backend), C(cause)), or
      null when verification did not run; the whole report with every check under O(full_reports).
  returned: always
  type: dict
proof:
  description: The proof levels of the verify, or null when it did not run.
  returned: always
  type: dict
  sample: {asked: service, reached: service, outcome: passed, not_reached: [{level: model, asked: false, why: not asked, flag: "--model NAME (after the service level)"}]}
  contains:
    asked:
      description: The level required - V(files), V(modeled), V(service) or V(model).
      type: str
    reached:
      description: The highest level proven (same values), or null when none.
      type: str
    outcome:
      description: V(passed), V(failed) or V(not_proven) (the level asked was not reached).
      type: str
    not_reached:
      description: Each level above RV(proof.reached), with C(asked), C(why) and the C(flag) or option that reaches it.
      type: list
      elements: dict
verify_after_rollback:
  description: The verify report after the automatic rollback of a change whose verification failed (shape of RV(verify)).
  returned: when verification failed and the change was rolled back
  type: dict
diff:
  description: Ansible's diff list, one entry per changing path, headers naming the path and its state.
  returned: when run with --diff
  type: list
  elements: dict
conflicts:
  description: What blocks the plan (for example a regular file where a symlink belongs); the task fails when any.
  returned: when a plan was made
  type: list
  elements: str
installation:
  description: The Ollama installed under the root - C(version), discovery C(generation), C(how) that was decided and the C(evidence).
  returned: when a plan was made
  type: dict
  sample: {generation: runner-engine, version: 0.13.5, how: binary, evidence: [], note: null, llama_server: null}
source:
  description: A sentence naming the site profile used when it shadows a shipped profile of that name, else empty.
  returned: when a plan was made
  type: str
restored:
  description: Paths a rollback restored (on a failed rollback, those restored before it failed).
  returned: when state=rolled_back, or a rollback failed part-way
  type: list
  elements: str
removed:
  description: Restored paths that did not exist before the apply (the rollback removed them).
  returned: when state=rolled_back changed the host
  type: list
  elements: str
not_restored:
  description: Paths a failed rollback could not restore.
  returned: when a rollback failed part-way
  type: list
  elements: str
holder:
  description: The run holding the root's lock - C(pid), C(started), C(ticks) (its start time since boot).
  returned: when another vgpu-fix run holds the lock
  type: dict
messages:
  description: Post-actions (ldconfig, daemon-reload, restart or why skipped) and recovery notes.
  returned: when state=applied and not in check mode, and when state=rolled_back changed the host
  type: list
  elements: str
notes:
  description: What the plan supersedes or leaves alone (for example settings in override.conf).
  returned: when a plan was made
  type: list
  elements: str
post_actions:
  description: What the changes need after writing (ldconfig, daemon-reload, restart).
  returned: when a plan was made
  type: list
  elements: str
errors:
  description: One line per problem (validation errors with their YAML location, conflicts, drifted paths).
  returned: on failure
  type: list
  elements: str
error:
  description: The kind of failure, as vgpu-fix's exception class (for example C(Conflict), C(ProfileError), C(LockHeld), C(VerifyFailedRolledBack)).
  returned: on failure
  type: str
  sample: Conflict
exit_code:
  description: The exit code C(vgpu-fix) would have exited with (see its README); C(vgpu-fix --json) carries the same.
  returned: on failure
  type: int
  sample: 5
vgpu_fix_version:
  description: Version of vgpu-fix that ran on the target.
  returned: always
  type: str
vgpu_fix_path:
  description: Where that vgpu-fix is installed on the target.
  returned: always
  type: str
"""

import json
import os
import sys
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.vgpufix.vgpu.plugins.module_utils.profile_input import (
    MUTUALLY_EXCLUSIVE,
    PROFILE_OPTIONS,
    load_profile,
)

try:
    import fixer
    from fixer import core
    from fixer.errors import Conflict, FixerError, RollbackFailed
    from fixer.plan import Change, Plan
    from fixer.model.proof import Level
    from fixer.render import ansible_diff, dumps, failure, proof_line, result
except ImportError:
    FIXER_IMPORT_ERROR = traceback.format_exc()
else:
    FIXER_IMPORT_ERROR = None

INSTALL_HINT = (
    "install the vgpu-fix wheel you ship into that Python (`{python} -m pip install "
    "vgpu_fix-<version>-py3-none-any.whl`), use the vgpufix.vgpu.deploy role (deploy_wheel), "
    "or point ansible_python_interpreter at a Python that has it"
)

# What RV(verify) keeps of a report without O(full_reports).
VERDICT_KEYS = ("outcome", "asked", "reached", "not_reached", "ok", "backend", "cause", "fix", "overruled")

ARGUMENT_SPEC = dict(
    **PROFILE_OPTIONS,
    state=dict(type="str", default="applied", choices=["applied", "rolled_back", "verified"]),
    root=dict(type="path", default="/"),
    restart=dict(type="bool", default=True),
    verify=dict(type="bool", default=True),
    probe=dict(type="bool"),
    probe_user=dict(type="str", default="nobody"),
    force=dict(type="bool", default=False),
    rollback_to=dict(type="int"),
    lock_timeout=dict(type="float", default=0.0),
    level=dict(type="str", choices=["files", "modeled", "service", "model"]),
    service_check=dict(type="bool", default=True),
    service_timeout=dict(type="float"),
    model=dict(type="str"),
    full_reports=dict(type="bool", default=False),
)


class Task:
    """One invocation: the parameters, the root, and the result document in vgpu-fix's JSON shape."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.profile_name = None
        self.command = {"applied": "apply", "rolled_back": "rollback", "verified": "verify"}[self.params["state"]]
        if module.check_mode and self.command == "apply":
            self.command = "plan"
        self.root = self.params["root"]

    def run(self):
        from fixer.core import resolve_root, seconds

        self.root = resolve_root(self.params["root"], name="root")
        self.params["lock_timeout"] = seconds("lock_timeout", self.params["lock_timeout"])
        return getattr(self, self.params["state"])()

    # -- states ---------------------------------------------------------------------------------

    def applied(self):
        p, profile = self.params, self.load()
        if self.module.check_mode:
            plan = core.make_plan(profile, self.root, force=p["force"])
            if plan.conflicts:
                raise Conflict(f"{len(plan.conflicts)} conflict(s) block the plan", details=plan.conflicts,
                               plan=plan)
            count = len(plan.pending)
            msg = f"check mode: {count} change(s) would be made" if count else "host already converged"
            return self.result(changed=bool(count), msg=msg, plan=plan)
        outcome = core.apply(profile, self.root, force=p["force"], restart=p["restart"],
                             lock_timeout=p["lock_timeout"], verify=p["verify"], probe=p["probe"], **self.proof_options())
        msg = f"applied generation {outcome.generation}" if outcome.changed else "host already converged"
        doc = self.result(changed=outcome.changed, msg=msg, plan=outcome.plan, generation=outcome.generation,
                          verify=outcome.verify, messages=outcome.messages + outcome.post_actions)
        if outcome.verify is not None and not outcome.verify.ok:
            doc["msg"] = f"{msg}; {proof_line(outcome.verify.to_dict())}"
            self.module.fail_json(**doc)
        return doc

    def rolled_back(self):
        p = self.params
        nothing = core.nothing_to_roll_back(self.root, p["rollback_to"])
        if nothing and self.module.check_mode:
            return self.result(changed=False, msg=nothing, restored=[])
        if nothing:  # as the CLI: a success that changes nothing; the rollback still finishes a cut-short save
            outcome = core.rollback(self.root, to=p["rollback_to"], lock_timeout=p["lock_timeout"])
            return self.result(changed=outcome.changed, msg="; ".join(outcome.messages), generation=outcome.generation,
                               restored=outcome.restored)
        selected, restores = core.rollback_preview(self.root, p["rollback_to"])
        selected.check_drift(p["force"], override="force: true")
        diff = self.rollback_diff(restores) if self.module._diff else None
        targets = selected.targets
        if self.module.check_mode:
            numbers = ", ".join(str(n) for n in selected.numbers)
            return self.result(changed=True, msg=f"check mode: would roll back generation(s) {numbers}",
                               generation=targets[-1].number if targets else None, restored=[], diff=diff)
        outcome = core.rollback(self.root, to=p["rollback_to"], force=p["force"], restart=p["restart"],
                                lock_timeout=p["lock_timeout"], service_check=p["service_check"],
                                service_timeout=p["service_timeout"])
        msg = (f"rolled back to before generation {outcome.generation}" if targets
               else "; ".join(outcome.messages))
        if outcome.verify is not None:
            msg += "; the restored service: " + proof_line(outcome.verify.to_dict())
        return self.result(changed=outcome.changed, msg=msg, generation=outcome.generation if targets else None,
                           restored=outcome.restored, messages=outcome.messages, diff=diff, verify=outcome.verify)

    def verified(self):
        profile = self.load()
        report = core.verifier(self.params["probe"], **self.proof_options())(profile, self.root)
        doc = self.result(changed=False, msg=proof_line(report.to_dict()), verify=report)
        if not report.ok:
            self.module.fail_json(**doc)
        return doc

    def proof_options(self):
        p = self.params
        return {"service_check": p["service_check"], "service_timeout": p["service_timeout"], "model": p["model"],
                "level": Level(p["level"]) if p["level"] else None, "probe_user": p["probe_user"]}

    # -- helpers --------------------------------------------------------------------------------

    def load(self):
        profile = load_profile(self.params, self.root)
        self.profile_name = profile.name
        return profile

    def rollback_diff(self, restores):
        """Before/after of each path a rollback would restore, in the same shape as an apply's diff."""
        changes = [Change("rollback", r.path, "update", r.current, r.recorded, f"restore generation {r.generation}")
                   for r in restores]
        return ansible_diff(Plan(profile="", root=self.root, changes=changes))

    def result(self, *, changed, msg, plan=None, generation=None, verify=None, diff=None, **extra):
        return self.finish(result(self.command, profile=self.profile_name, root=self.root, changed=changed,
                                  failed=False, msg=msg, plan=plan, generation=generation, verify=verify, **extra),
                           diff)

    def finish(self, doc, diff=None):
        """vgpu-fix's JSON document as Ansible returns it: plain data, warnings as module warnings."""
        doc = json.loads(dumps(doc))
        doc.pop("failed")
        if not self.params["full_reports"]:
            for key in ("verify", "verify_after_rollback"):
                if doc.get(key):
                    doc[key] = {k: doc[key].get(k) for k in VERDICT_KEYS}
        if diff is not None:
            doc["diff"] = diff
        if not self.module._diff:
            doc.pop("diff")
        for warning in doc.pop("warnings", None) or []:
            self.module.warn(warning)
        doc["vgpu_fix_version"] = fixer.__version__
        doc["vgpu_fix_path"] = os.path.dirname(os.path.abspath(fixer.__file__))
        return doc

    def fail(self, exc):
        # A failed rollback may leave the host half-changed: say so instead of claiming no change.
        doc = self.finish(failure(self.command, exc, profile=self.profile_name, root=self.root,
                                  changed=isinstance(exc, RollbackFailed)))
        doc["msg"] = exc.message + (": " + "; ".join(exc.details) if exc.details else "") + _cause(exc.verify)
        doc["error"] = type(exc).__name__
        self.module.fail_json(**doc)


def _cause(report):
    """The verify report's cause and fix, for the one-line msg."""
    if report is None or not report.cause:
        return ""
    return f"; cause: {report.cause}" + (f"; fix: {report.fix}" if report.fix else "")


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    if FIXER_IMPORT_ERROR:
        module.fail_json(
            msg=missing_required_lib("vgpu-fix") + "; " + INSTALL_HINT.format(python=sys.executable or "python3"),
            exception=FIXER_IMPORT_ERROR,
        )
    task = Task(module)
    try:
        doc = task.run()
    except FixerError as exc:
        task.fail(exc)
    module.exit_json(**doc)


if __name__ == "__main__":
    main()
