"""`vgpu-fix fix`: gather the evidence (evidence.py), choose the profile and its variables (choose.py)."""
