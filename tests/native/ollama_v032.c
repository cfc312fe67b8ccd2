/* Stand-in for a v0.30+ `ollama` binary, for the tiers that run without a real one (the opt-in tier
   VGPU_FIX_REAL_OLLAMA runs the real binary). What vgpu-fix reads or runs of it: the version string that
   `-X version.Version=` embeds (a Go string header: pointer, length, over bytes that run on into the next
   string, as in a stripped Go binary); `ollama runner --ollama-engine`, which v0.30+ rejects (v0.32.15
   runner/runner.go:20; cobra prints `Error: <text>` and exits 1, main.go:12); and `ollama gpu-discover`,
   reproduced from v0.32.15 discover/native_probe_linux.go:249-418 for its CUDA driver and NVML part
   (libcuda.so.1 and libnvidia-ml.so.1 opened RTLD_LOCAL, cuInit, the driver version, per device compute
   capability, integrated flag, name and memory; NVML's nvmlSystemGetDriverVersion parsed as in
   native_probe_platform.go:121-132), printed as the JSON of native_probe.go:25-48. Not reproduced: the
   ggml half (:170-247), which only adds devices the CUDA half also reports here. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "0.32.15"
#endif
struct gostring { const char *p; long n; };
static const char strings[] = VERSION "unknown runner engine, expected --mlx-engine";
struct gostring Version = { strings, sizeof VERSION - 1 };

typedef int (*fn_int)(int *);
typedef int (*fn_init)(unsigned);

static int nvidia_driver_major(void) {
    void *nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvml) return 0;
    int (*init)(void) = (int (*)(void))dlsym(nvml, "nvmlInit_v2");
    int (*shutdown)(void) = (int (*)(void))dlsym(nvml, "nvmlShutdown");
    int (*version)(char *, unsigned) = (int (*)(char *, unsigned))dlsym(nvml, "nvmlSystemGetDriverVersion");
    if (!init || !shutdown || !version || init() != 0) return 0;
    char text[80] = {0};
    int ok = version(text, sizeof text) == 0;
    shutdown();
    char *dot = strchr(text, '.');
    if (!ok || text[0] == 0) return 0;
    if (dot) *dot = 0;
    for (char *c = text; *c; c++) if (*c < '0' || *c > '9') return 0;
    return atoi(text);
}

static int gpu_discover(void) {
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!cuda) { fprintf(stderr, "Error: %s\n", dlerror()); return 1; }
    fn_init cuInit = (fn_init)dlsym(cuda, "cuInit");
    fn_int cuDriverGetVersion = (fn_int)dlsym(cuda, "cuDriverGetVersion");
    fn_int cuDeviceGetCount = (fn_int)dlsym(cuda, "cuDeviceGetCount");
    int (*cuDeviceGet)(int *, int) = (int (*)(int *, int))dlsym(cuda, "cuDeviceGet");
    int (*cuDeviceGetAttribute)(int *, int, int) = (int (*)(int *, int, int))dlsym(cuda, "cuDeviceGetAttribute");
    int (*cuDeviceGetName)(char *, int, int) = (int (*)(char *, int, int))dlsym(cuda, "cuDeviceGetName");
    int (*cuDeviceTotalMem)(size_t *, int) = (int (*)(size_t *, int))dlsym(cuda, "cuDeviceTotalMem_v2");
    if (!cuInit || !cuDriverGetVersion || !cuDeviceGetCount || !cuDeviceGet || !cuDeviceGetAttribute ||
        !cuDeviceGetName || !cuDeviceTotalMem) {
        fprintf(stderr, "Error: libcuda.so.1 lacks a driver entry point\n");
        return 1;
    }
    if (cuInit(0) != 0) { fprintf(stderr, "Error: cuInit failed\n"); return 1; }
    int version = 0, count = 0;
    cuDriverGetVersion(&version);
    int nvidia = nvidia_driver_major();
    if (cuDeviceGetCount(&count) != 0) { fprintf(stderr, "Error: cuDeviceGetCount failed\n"); return 1; }
    printf("{\"devices\":[");
    for (int i = 0, printed = 0; i < count; i++) {
        int device, major = 0, minor = 0, integrated = 0;
        if (cuDeviceGet(&device, i) != 0) continue;
        cuDeviceGetAttribute(&major, 75, device);
        cuDeviceGetAttribute(&minor, 76, device);
        cuDeviceGetAttribute(&integrated, 18, device);
        char name[128] = {0};
        size_t total = 0;
        cuDeviceGetName(name, sizeof name, device);
        cuDeviceTotalMem(&total, device);
        printf("%s{\"library\":\"CUDA\",\"index\":%d,\"index_matches_backend\":true,\"description\":\"%s\","
               "\"integrated\":%s,\"integrated_known\":true,\"total_memory\":%zu,\"compute_major\":%d,"
               "\"compute_minor\":%d,\"cuda_driver_major\":%d,\"cuda_driver_minor\":%d,\"nvidia_driver_major\":%d}",
               printed++ ? "," : "", i, name, integrated == 1 ? "true" : "false", total, major, minor,
               version / 1000, (version % 1000) / 10, nvidia);
    }
    printf("]}\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "runner") == 0) {
        fprintf(stderr, "Error: %s\n", strings + Version.n);
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("Warning: could not connect to a running Ollama instance\nWarning: client version is %.*s\n",
               (int)Version.n, Version.p);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "gpu-discover") == 0) return gpu_discover();
    if (argc > 1 && strcmp(argv[1], "serve") == 0 && getenv("STANDIN_SERVE")) {
        execv(getenv("STANDIN_SERVE"), argv);
        perror("stand-in ollama: STANDIN_SERVE");
        return 127;
    }
    fprintf(stderr, "Error: stand-in ollama: only `runner`, `gpu-discover`, `-v` and (with STANDIN_SERVE) `serve`\n");
    return 1;
}
