/* Fake NVML shim (libvgpu-nvml.so, SONAME libnvidia-ml.so.1). */
int nvmlInit_v2(void) { return 0; }
int nvmlDeviceGetCount_v2(unsigned int *count) { *count = 1; return 0; }
int nvmlShutdown(void) { return 0; }
