/* Fake libggml-cuda.so: ggml_backend_init() counts devices through cudaGetDeviceCount like the real one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_fake.h"

#define MAX_DEVICES 16

int cudaGetDeviceCount(int *count);
int cudaDriverGetVersion(int *version);
const char *cudaGetErrorString(int error);
int cudaGetDeviceProperties_v2(void *prop, int device);
int cudaDeviceGetAttribute(int *value, int attribute, int device);
int cudaSetDevice(int device);
int cublasCreate_v2(void **handle);
int cublasLtCreate(void **handle);
#ifndef NO_DRIVER_IMPORT
int cuDeviceGet(int *device, int ordinal);
int cuMemCreate(void **handle, size_t size, const void *prop, unsigned long long flags);
#endif

struct cuda_device {
    char name[16], description[256], id[64];
    size_t total;
    int major, minor;
};

static struct cuda_device devices[MAX_DEVICES];
static struct ggml_backend_device handles[MAX_DEVICES];
static struct ggml_backend_reg reg;
static int device_count, driver_version;

static struct cuda_device *ctx(ggml_backend_dev_t dev) { return dev->context; }
static const char *dev_name(ggml_backend_dev_t dev) { return ctx(dev)->name; }
static const char *dev_description(ggml_backend_dev_t dev) { return ctx(dev)->description; }
static void dev_memory(ggml_backend_dev_t dev, size_t *free, size_t *total) {
    *free = ctx(dev)->total;
    *total = ctx(dev)->total;
}
static void dev_props(ggml_backend_dev_t dev, struct ggml_backend_dev_props *p) {
    struct cuda_device *d = ctx(dev);
    memset(p, 0, sizeof *p);
    p->name = d->name;
    p->description = d->description;
    p->memory_free = p->memory_total = d->total;
    p->type = 1;
    p->id = d->id;
    p->library = "CUDA";
    p->compute_major = d->major;
    p->compute_minor = d->minor;
    p->driver_major = driver_version / 1000;
    p->driver_minor = driver_version % 1000 / 10;
}
static const char *reg_name(ggml_backend_reg_t r) { (void)r; return "CUDA"; }
static size_t reg_count(ggml_backend_reg_t r) { (void)r; return (size_t)device_count; }
static ggml_backend_dev_t reg_get(ggml_backend_reg_t r, size_t i) {
    (void)r;
    return i < (size_t)device_count ? &handles[i] : NULL;
}
static void *reg_proc(ggml_backend_reg_t r, const char *name) { (void)r; (void)name; return NULL; }

static void uuid_text(const unsigned char *b, char *out) {
    sprintf(out, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Referenced so that RTLD_NOW must bind them, as the real backend's would be. */
void ggml_cuda_unused_bindings(void) {
    void *h;
    cublasCreate_v2(&h);
    cublasLtCreate(&h);
#ifndef NO_DRIVER_IMPORT
    int d;
    cuDeviceGet(&d, 0);
    cuMemCreate(&h, 0, NULL, 0);
#endif
}

int ggml_backend_score(void) { return 1; }

ggml_backend_reg_t ggml_backend_init(void) {
    static int done;
    if (done) return &reg;
    done = 1;
    int n = 0;
    int status = cudaGetDeviceCount(&n);
    if (status != 0) {
        fprintf(stderr, "ggml_cuda_init: failed to initialize CUDA: %s\n", cudaGetErrorString(status));
        n = 0;
    } else {
        fprintf(stderr, "ggml_cuda_init: found %d CUDA devices:\n", n);
    }
    cudaDriverGetVersion(&driver_version);
    int deep = getenv("GGML_CUDA_INIT") != NULL;
    for (int i = 0; i < n && device_count < MAX_DEVICES; i++) {
        unsigned char prop[4096];
        if (cudaGetDeviceProperties_v2(prop, i) != 0) continue;
        if (deep && cudaSetDevice(i) != 0) {
            fprintf(stderr, "ggml_cuda_init: device %d failed to initialize\n", i);
            continue;
        }
        struct cuda_device *d = &devices[device_count];
        snprintf(d->name, sizeof d->name, "CUDA%d", device_count);
        snprintf(d->description, sizeof d->description, "%s", (char *)prop);
        uuid_text(prop + 256, d->id);
        memcpy(&d->total, prop + 288, sizeof d->total);
        cudaDeviceGetAttribute(&d->major, 75, i);
        cudaDeviceGetAttribute(&d->minor, 76, i);
        fprintf(stderr, "  Device %d: %s, compute capability %d.%d, ID: %s\n", i, d->description, d->major, d->minor, d->id);
        handles[device_count] = (struct ggml_backend_device){
            {dev_name, dev_description, dev_memory, dev_props}, &reg, d};
        device_count++;
    }
    reg = (struct ggml_backend_reg){1, {reg_name, reg_count, reg_get, reg_proc}, NULL};
    return &reg;
}
