/* Fake cuBLAS / cuBLASLt; STRAY builds a shim-named copy that lacks the entry point the backend needs. */
#ifdef LT
int cublasLtCreate(void **handle) { *handle = 0; return 0; }
int cublasLtGetVersion(void) { return 120400; }
#else
#ifndef STRAY
int cublasCreate_v2(void **handle) { *handle = 0; return 0; }
#endif
int cublasGetVersion_v2(void *handle, int *version) { (void)handle; *version = 120400; return 0; }
#endif
