/* Readers of the image-classification file formats behind the classify task:
 * IDX (MNIST, Fashion-MNIST) and the CIFAR-10 binary batches, either plain or
 * gzip-compressed (told apart by content). Formats: spec/data.md. */
#ifndef ETNAS_PLUGINS_CLASSIFY_IO_H
#define ETNAS_PLUGINS_CLASSIFY_IO_H

#include <stdint.h>

#include <etnas/host.h>

/* A set of labelled images kept as bytes, planar like a CIFAR record. */
typedef struct classify_images {
    int64_t count;
    int64_t capacity; /* examples allocated */
    int32_t channels, height, width;
    uint8_t *pixels; /* (count, channels, height, width) */
    uint8_t *labels; /* (count) */
} classify_images;

#define CLASSIFY_CIFAR_SIDE 32
#define CLASSIFY_CIFAR_RECORD (1 + 3 * CLASSIFY_CIFAR_SIDE * CLASSIFY_CIFAR_SIDE)

void classify_images_free(classify_images *set);

/* dir/name, or dir/name.gz first when try_gz; the chosen path is malloc'd
 * into *path. A missing file is an error naming what was tried and `hint`. */
int classify_find_file(const et_host *host, const char *dir, const char *name, int try_gz,
                       const char *hint, char **path, char **err);

/* An IDX image file (magic 0x00000803) and its label file (0x00000801) into
 * *out (which must be empty). Labels must lie in [0, num_classes). */
int classify_read_idx(const et_host *host, const char *images_path, const char *labels_path,
                      int32_t num_classes, classify_images *out, char **err);

/* The records of one CIFAR-10 binary batch appended to *set (3×32×32). */
int classify_read_cifar(const et_host *host, const char *path, int32_t num_classes,
                        classify_images *set, char **err);

#endif
