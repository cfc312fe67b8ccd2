/* Fake CUDA driver shim (libvgpu-cuda.so); variants chosen with -D at build time. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DRIVER_VERSION
#define DRIVER_VERSION 12040
#endif
#ifndef DEFAULT_DEVICES
#define DEFAULT_DEVICES 1
#endif

typedef struct { unsigned char bytes[16]; } CUuuid;

static int device_count(void) {
    const char *env = getenv("FAKE_CUDA_DEVICES");
    return env ? atoi(env) : DEFAULT_DEVICES;
}

int cuInit(unsigned int flags) {
    (void)flags;
#ifdef INIT_DELAY_S
    /* A slow mediator: the first cuInit of every process takes INIT_DELAY_S seconds. */
    static int initialised;
    if (!initialised) { initialised = 1; sleep(INIT_DELAY_S); }
#endif
#ifdef HANG_INIT
    for (;;) pause();
#endif
#ifdef SEGV_INIT
    raise(SIGSEGV);
#endif
    return 0;
}

#ifdef SEGV_EXIT
/* A shim that works, then kills the process as it exits: every output is printed, the status is a crash. */
__attribute__((destructor)) static void crash_at_exit(void) { raise(SIGSEGV); }
#endif

int cuDriverGetVersion(int *version) { *version = DRIVER_VERSION; return 0; }
int cuDeviceGetCount(int *count) { *count = device_count(); return 0; }
#ifndef OMIT_DEVICEGET /* a partial shim: the backend imports cuDeviceGet, so RTLD_NOW fails */
int cuDeviceGet(int *device, int ordinal) {
    if (ordinal < 0 || ordinal >= device_count()) return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *device = ordinal;
    return 0;
}
#endif
int cuDeviceGetName(char *name, int len, int device) {
    snprintf(name, (size_t)len, "NVIDIA H100 80GB HBM3 (fake %d)", device);
    return 0;
}
int cuDeviceGetUuid(CUuuid *uuid, int device) {
    for (int i = 0; i < 16; i++) uuid->bytes[i] = (unsigned char)(0xa0 + i);
    uuid->bytes[15] = (unsigned char)device;
    return 0;
}
/* FAKE_CUDA_TOTAL_MIB, FAKE_CUDA_CC ("8.7") and FAKE_CUDA_INTEGRATED=1 shape the fake device. */
int cuDeviceTotalMem_v2(size_t *bytes, int device) {
    (void)device;
    const char *mib = getenv("FAKE_CUDA_TOTAL_MIB");
    *bytes = mib ? (size_t)atoll(mib) << 20 : (size_t)80 << 30;
    return 0;
}
int cuDeviceGetAttribute(int *value, int attribute, int device) {
    (void)device;
    const char *cc = getenv("FAKE_CUDA_CC");
    int major = 9, minor = 0;
    if (cc) sscanf(cc, "%d.%d", &major, &minor);
    if (attribute == 75) { *value = major; return 0; } /* compute capability major */
    if (attribute == 76) { *value = minor; return 0; } /* compute capability minor */
    if (attribute == 18) { const char *i = getenv("FAKE_CUDA_INTEGRATED"); *value = i && *i == '1'; return 0; }
    *value = 0;
    return 0;
}
int cuDevicePrimaryCtxRetain(void **ctx, int device) {
    (void)device;
#ifdef SEGV_CTX
    raise(SIGSEGV);
#endif
    static int dummy;
    *ctx = &dummy;
    return 0;
}
int cuGetErrorString(int error, const char **text) { (void)error; *text = "fake driver error"; return 0; }
#ifndef OMIT_MEMCREATE
int cuMemCreate(void **handle, size_t size, const void *prop, unsigned long long flags) {
    (void)handle; (void)size; (void)prop; (void)flags;
    return 801; /* CUDA_ERROR_NOT_SUPPORTED */
}
#endif

#ifdef INTERPOSE_DLOPEN
/* Like the field shim: in processes named ollama*, dlopen goes through the shim, which hides
   the ggml CUDA backend from ggml's loader. */
static int in_ollama(void) {
    char comm[64] = {0};
    FILE *f = fopen("/proc/self/comm", "r");
    if (!f) return 0;
    if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
    fclose(f);
    return strncmp(comm, "ollama", 6) == 0;
}

void *dlopen(const char *file, int flags) {
    static void *(*real_dlopen)(const char *, int);
    if (!real_dlopen) real_dlopen = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
    if (file && strstr(file, "libggml-cuda") && in_ollama()) return NULL;
    return real_dlopen(file, flags);
}
#endif

#ifdef INTERPOSE_OPEN
/* A runtime interposer that leaves dlopen alone: it wraps open(2), which only a preload can do
   (a library dlopened RTLD_LOCAL never interposes libc for the process). */
#include <fcntl.h>
#include <stdarg.h>
int open(const char *path, int flags, ...) {
    static int (*real_open)(const char *, int, ...);
    va_list ap;
    int mode;
    if (!real_open) real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    va_start(ap, flags);
    mode = va_arg(ap, int);
    va_end(ap);
    return real_open(path, flags, mode);
}
#endif
