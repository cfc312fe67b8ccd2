"""Test-only callback: write every task result to $VGPU_TEST_RESULTS/<host>.json, keyed by register name.

Cheaper than a recording task (no extra module run per host) and sees results under --check and
after failures alike.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: record_results
type: aggregate
short_description: write task results to files for the tests
description: [Writes each task's result to $VGPU_TEST_RESULTS/<host>.json, keyed by its register name.]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.results: dict[str, dict] = {}

    def _record(self, result, failed: bool = False) -> None:
        task = result._task
        key = task.register or task.get_name()
        doc = dict(result._result)
        doc.setdefault("failed", failed)
        self.results.setdefault(result._host.get_name(), {})[key] = doc

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_playbook_on_stats(self, stats):
        directory = os.environ["VGPU_TEST_RESULTS"]
        for host, results in self.results.items():
            with open(os.path.join(directory, f"{host}.json"), "w", encoding="utf-8") as fh:
                json.dump(results, fh, default=str)
