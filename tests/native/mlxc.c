/* Stand-in libmlxc.so for an `mlx_*` folder of lib/ollama. Plain, it exports none of mlx-c's API, so
   Ollama's MLX loader opens it and lets it go again (v0.32.15 x/mlxrunner/mlx/dynamic.go:57-75); with
   -DMLX_API it defines mlx-c functions, the mark of a library that loader keeps. */
int vgpu_fix_fake_mlxc(void) { return 0; }
#ifdef MLX_API
int mlx_array_new(void) { return 0; }
int mlx_version(void) { return 0; }
#endif
