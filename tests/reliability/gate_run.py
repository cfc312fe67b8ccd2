"""`python gate_run.py READY GATE ARGS...`: import vgpu-fix, touch READY, wait for GATE, run `vgpu-fix ARGS`.

Lets a test start many real vgpu-fix processes at the same instant (interpreter start-up takes
longer than a whole apply, so plain Popen calls would mostly run one after another)."""

import os
import sys
import time

ready, gate, *args = sys.argv[1:]
import sh  # noqa: E402,F401 - warm, like the run itself would be a moment later

import fixer.apply.transaction  # noqa: E402,F401
import fixer.cli  # noqa: E402
import fixer.profiles  # noqa: E402,F401
import fixer.render  # noqa: E402,F401

open(ready, "w").close()
while not os.path.exists(gate):
    time.sleep(0.001)
sys.argv = ["vgpu-fix", *args]
fixer.cli.main()
