/* Fake CUDA runtime: like the real one it dlopens libcuda.so.1 at run time and reports 35 without it.
   SHIM_STUBS builds the runtime shim libvgpu-cudart.so: it carries stub driver entry points (0 devices)
   and looks driver functions up in the global scope, so it works only when preloaded after the
   driver shim (for a symbol defined twice, the first object in LD_PRELOAD wins). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CUDA_MAJOR
#define CUDA_MAJOR 12
#endif
#define RUNTIME_VERSION (CUDA_MAJOR * 1000 + 40)

enum { cudaSuccess = 0, cudaErrorInvalidDevice = 101, cudaErrorInsufficientDriver = 35,
       cudaErrorNoDevice = 100, cudaErrorInitializationError = 3 };
typedef struct { unsigned char bytes[16]; } CUuuid;

#ifdef SHIM_STUBS
int cuInit(unsigned int flags) { (void)flags; return 0; }
int cuDriverGetVersion(int *version) { *version = 12040; return 0; }
int cuDeviceGetCount(int *count) { *count = 0; return 0; }
#endif

static struct {
    int loaded, status, count;
    int visible[64];
    int (*cuInit)(unsigned);
    int (*cuDriverGetVersion)(int *);
    int (*cuDeviceGetCount)(int *);
    int (*cuDeviceGetName)(char *, int, int);
    int (*cuDeviceGetUuid)(CUuuid *, int);
    int (*cuDeviceTotalMem_v2)(size_t *, int);
    int (*cuDeviceGetAttribute)(int *, int, int);
    int (*cuDevicePrimaryCtxRetain)(void **, int);
} drv;

static void uuid_text(const CUuuid *u, char *out) {
    const unsigned char *b = u->bytes;
    sprintf(out, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static int visible(int device, int total) {
    const char *env = getenv("CUDA_VISIBLE_DEVICES");
    if (!env) return 1;
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", env);
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (strncmp(tok, "GPU-", 4) == 0) {
            CUuuid u; char text[64];
            if (drv.cuDeviceGetUuid && drv.cuDeviceGetUuid(&u, device) == 0) {
                uuid_text(&u, text);
                if (strcmp(text, tok) == 0) return 1;
            }
        } else if (atoi(tok) == device && atoi(tok) < total) {
            return 1;
        }
    }
    return 0;
}

static int load_driver(void) {
    if (drv.loaded) return drv.status;
    drv.loaded = 1;
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
#ifdef SHIM_STUBS
    h = RTLD_DEFAULT; /* NULL: global-scope lookups */
#else
    if (!h) return drv.status = cudaErrorInsufficientDriver;
#endif
#define SYM(name) drv.name = (typeof(drv.name))dlsym(h, #name)
    SYM(cuInit); SYM(cuDriverGetVersion); SYM(cuDeviceGetCount); SYM(cuDeviceGetName);
    SYM(cuDeviceGetUuid); SYM(cuDeviceTotalMem_v2); SYM(cuDeviceGetAttribute); SYM(cuDevicePrimaryCtxRetain);
    if (!drv.cuInit || !drv.cuDriverGetVersion || !drv.cuDeviceGetCount)
        return drv.status = cudaErrorInsufficientDriver;
    int version = 0;
    if (drv.cuDriverGetVersion(&version) != 0 || version < CUDA_MAJOR * 1000)
        return drv.status = cudaErrorInsufficientDriver;
    if (drv.cuInit(0) != 0) return drv.status = cudaErrorInitializationError;
    int total = 0;
    drv.cuDeviceGetCount(&total);
    for (int d = 0; d < total && drv.count < 64; d++)
        if (visible(d, total)) drv.visible[drv.count++] = d;
    return drv.status = drv.count ? cudaSuccess : cudaErrorNoDevice;
}

int cudaGetDeviceCount(int *count) {
    int status = load_driver();
    *count = status == cudaSuccess ? drv.count : 0;
    return status;
}
int cudaDriverGetVersion(int *version) {
    *version = 0;
    if (load_driver() == cudaErrorInsufficientDriver && !drv.cuDriverGetVersion) return cudaSuccess;
    if (drv.cuDriverGetVersion) drv.cuDriverGetVersion(version);
    return cudaSuccess;
}
int cudaRuntimeGetVersion(int *version) { *version = RUNTIME_VERSION; return cudaSuccess; }
const char *cudaGetErrorString(int error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return "unknown error";
    }
}
/* Fills the prefix of the real cudaDeviceProp: name[256], uuid, luid, mask, totalGlobalMem. */
int cudaGetDeviceProperties_v2(void *prop, int device) {
    int status = load_driver();
    if (status) return status;
    if (device < 0 || device >= drv.count) return cudaErrorInvalidDevice;
    int d = drv.visible[device];
    memset(prop, 0, 296);
    if (drv.cuDeviceGetName) drv.cuDeviceGetName((char *)prop, 256, d);
    if (drv.cuDeviceGetUuid) drv.cuDeviceGetUuid((CUuuid *)((char *)prop + 256), d);
    if (drv.cuDeviceTotalMem_v2) drv.cuDeviceTotalMem_v2((size_t *)((char *)prop + 288), d);
    return cudaSuccess;
}
int cudaDeviceGetAttribute(int *value, int attribute, int device) {
    int status = load_driver();
    if (status) return status;
    if (device < 0 || device >= drv.count) return cudaErrorInvalidDevice;
    return drv.cuDeviceGetAttribute ? drv.cuDeviceGetAttribute(value, attribute, drv.visible[device]) : 3;
}
int cudaSetDevice(int device) {
    int status = load_driver();
    if (status) return status;
    if (device < 0 || device >= drv.count) return cudaErrorInvalidDevice;
    void *ctx;
    return drv.cuDevicePrimaryCtxRetain ? drv.cuDevicePrimaryCtxRetain(&ctx, drv.visible[device]) : 3;
}
