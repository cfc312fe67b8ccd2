/* Fake NVML shim (libvgpu-nvml.so, SONAME libnvidia-ml.so.1). With -DDRIVER_STRING="..." it answers
   nvmlSystemGetDriverVersion like the field's vGPU shim ("12.9.00": a CUDA version, not a driver's);
   with -DCRASH it kills the process that asks (nvmlInit_v2 raises SIGSEGV). */
#include <signal.h>
#include <stdio.h>

int nvmlInit_v2(void) {
#ifdef CRASH
    raise(SIGSEGV);
#endif
    return 0;
}
int nvmlDeviceGetCount_v2(unsigned int *count) { *count = 1; return 0; }
int nvmlShutdown(void) { return 0; }
#ifdef DRIVER_STRING
int nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    snprintf(version, length, "%s", DRIVER_STRING);
    return 0;
}
#endif
