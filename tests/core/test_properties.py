"""Properties over generated host states: apply is idempotent, and rollback after apply is the identity."""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixer import core, profiles
from fixer.apply import transaction as applier
from fixer.demo import build_seed_host, snapshot_tree

LINKS = ["/opt/vgpu/lib/libcuda.so.1", "/opt/vgpu/lib/libnvidia-ml.so.1", "/usr/local/lib/ollama/libggml-cuda.so"]
FILES = ["/etc/udev/rules.d/70-vgpu-fix.rules", "/opt/vgpu/lib/libcublasLt.so.12",
         "/etc/systemd/system/ollama.service.d/zz-vgpu-fix.conf", "/etc/ld.so.conf.d/vgpu-fix.conf",
         "/opt/vgpu/lib/libcublas.so.12"]
env_values = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)

path_state = st.one_of(
    st.just(("absent",)),
    st.tuples(st.just("symlink"), st.sampled_from(["libvgpu-cuda.so", "elsewhere.so", "cuda_v12/libggml-cuda.so"])),
    st.tuples(st.just("file"), st.binary(max_size=40), st.sampled_from([0o600, 0o644, 0o755])),
)


@st.composite
def host_states(draw):
    return {
        "paths": {p: draw(path_state) for p in LINKS + FILES},
        "override_env": draw(st.dictionaries(st.sampled_from(["OLLAMA_NUM_GPU", "LD_PRELOAD", "OLLAMA_LLM_LIBRARY", "X"]),
                                             env_values, max_size=3)),
        "preload": draw(st.lists(st.sampled_from(["/opt/vgpu/lib/libvgpu-cuda.so", "/usr/lib/libkeep.so",
                                                  "/opt/vgpu/lib/libvgpu-cudart.so"]), max_size=3)),
    }


def materialise(root: str, state: dict) -> None:
    build_seed_host(root)
    for path, spec in state["paths"].items():
        real = os.path.join(root, path.lstrip("/"))
        if os.path.lexists(real):
            os.unlink(real)
        os.makedirs(os.path.dirname(real), exist_ok=True)
        if spec[0] == "symlink":
            os.symlink(spec[1], real)
        elif spec[0] == "file":
            with open(real, "wb") as fh:
                fh.write(spec[1])
            os.chmod(real, spec[2])
    from fixer.facts.systemd import quote_assignment

    override = "[Service]\n" + "".join(f"Environment={quote_assignment(k, v)}\n" for k, v in state["override_env"].items())
    with open(os.path.join(root, "etc/systemd/system/ollama.service.d/override.conf"), "w") as fh:
        fh.write(override)
    with open(os.path.join(root, "etc/ld.so.preload"), "w") as fh:
        fh.write("".join(f"{entry}\n" for entry in state["preload"]))


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(host_states())
def test_apply_converges_in_one_step_and_rollback_is_the_identity(state):
    root = tempfile.mkdtemp(prefix="vgpu-prop-")
    try:
        materialise(root, state)
        before = snapshot_tree(root)
        profile = profiles.load("h100-vgpu", root)
        applier.apply(profile, root, force=True)
        assert not core.make_plan(profile, root).pending
        second = applier.apply(profile, root, force=True)
        assert not second.changed and second.generation is None
        applier.rollback(root)
        assert snapshot_tree(root) == before
    finally:
        shutil.rmtree(root)
