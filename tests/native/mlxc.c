/* Stand-in libmlxc.so for an `mlx_*` folder of lib/ollama: it loads, but exports none of mlx-c's API,
   so Ollama's MLX loader opens it and lets it go again (v0.32.15 x/mlxrunner/mlx/dynamic.go:57-75). */
int vgpu_fix_fake_mlxc(void) { return 0; }
