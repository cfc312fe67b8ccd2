"""passthrough-gpu on a HAMi-core host: the service's preloaded libvgpu.so enforces the GPU share's memory
and SM limits (HAMi-core README.md, "Usage": LD_PRELOAD=libvgpu.so, CUDA_DEVICE_MEMORY_LIMIT,
CUDA_DEVICE_SM_LIMIT); a plan that would drop it, or the pin the host runs with, is refused unless forced."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixer import core, profiles
from tests.hosts import grid_guest

HAMI_UNIT = """[Service]
Environment="LD_PRELOAD=/usr/local/vgpu/libvgpu.so"
Environment="CUDA_DEVICE_MEMORY_LIMIT=20g"
Environment="CUDA_DEVICE_SM_LIMIT=50"
Environment="OLLAMA_LLM_LIBRARY=cuda_v12"
"""


@pytest.fixture
def hami_root(seed_root) -> str:
    grid_guest(seed_root)
    Path(seed_root, "etc/systemd/system/ollama.service.d/override.conf").write_text(HAMI_UNIT)
    return seed_root


def _plan(root: str, profile, force: bool = False):
    return core.make_plan(profile, root, force=force)


def test_passthrough_refuses_to_drop_the_hami_preload_and_pin(hami_root):
    plan = _plan(hami_root, profiles.load("passthrough-gpu", hami_root))
    hami = [c for c in plan.conflicts if "HAMi-core" in c]
    assert len(hami) == 1, plan.conflicts
    assert "/usr/local/vgpu/libvgpu.so (CUDA_DEVICE_MEMORY_LIMIT=20g, CUDA_DEVICE_SM_LIMIT=50)" in hami[0]
    assert "OLLAMA_LLM_LIBRARY=cuda_v12" in hami[0]


def test_force_plans_it_with_a_warning(hami_root):
    plan = _plan(hami_root, profiles.load("passthrough-gpu", hami_root), force=True)
    assert not any("HAMi-core" in c for c in plan.conflicts)
    assert any("HAMi-core" in w and "--force" in w for w in plan.warnings)


def test_a_profile_that_keeps_them_plans_cleanly(hami_root, tmp_path):
    keep = tmp_path / "hami.yaml"
    keep.write_text("name: hami\nextends: passthrough-gpu\npreload: [/usr/local/vgpu/libvgpu.so]\n"
                    "service:\n  environment: {OLLAMA_LLM_LIBRARY: cuda_v12}\n  unset: [OLLAMA_NUM_GPU, OLLAMA_LIBRARY_PATH]\n")
    plan = _plan(hami_root, profiles.load(str(keep), hami_root))
    assert not any("HAMi-core" in c for c in plan.conflicts), plan.conflicts


def test_a_host_without_hami_core_is_not_concerned(seed_root):
    grid_guest(seed_root)
    plan = _plan(seed_root, profiles.load("passthrough-gpu", seed_root))
    assert not any("HAMi-core" in c for c in plan.conflicts + plan.warnings)
