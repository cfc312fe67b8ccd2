/* Fake libggml-base.so.0: the real registry entry-point names over ggml_fake.h. */
#include "ggml_fake.h"

const char *ggml_backend_reg_name(ggml_backend_reg_t reg) { return reg->iface.get_name(reg); }
size_t ggml_backend_reg_dev_count(ggml_backend_reg_t reg) { return reg->iface.get_device_count(reg); }
ggml_backend_dev_t ggml_backend_reg_dev_get(ggml_backend_reg_t reg, size_t index) {
    return reg->iface.get_device(reg, index);
}
const char *ggml_backend_dev_name(ggml_backend_dev_t dev) { return dev->iface.get_name(dev); }
const char *ggml_backend_dev_description(ggml_backend_dev_t dev) { return dev->iface.get_description(dev); }
void ggml_backend_dev_memory(ggml_backend_dev_t dev, size_t *free, size_t *total) {
    dev->iface.get_memory(dev, free, total);
}
void ggml_backend_dev_get_props(ggml_backend_dev_t dev, struct ggml_backend_dev_props *props) {
    dev->iface.get_props(dev, props);
}
