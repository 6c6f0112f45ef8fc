/* Turning stored byte images into the float patch sequences the classify task
 * hands the engine: per-channel statistics, the byte-to-float table, and the
 * crop/flip view of training images. */
#ifndef ETNAS_PLUGINS_CLASSIFY_PATCH_H
#define ETNAS_PLUGINS_CLASSIFY_PATCH_H

#include <stdint.h>

#include "classify_io.h"

/* Where an augmented image comes from: the image zero-padded by `pad` pixels
 * on every side, the height × width window at (dy, dx) of that (both in
 * [0, 2·pad]), then mirrored left-right when `flip`. All zero: the image. */
typedef struct classify_view {
    int32_t pad, dy, dx, flip;
} classify_view;

/* Mean and population standard deviation of pixel/255, per channel, over the
 * examples index[0..n) of set. mean and std hold set->channels values. */
void classify_channel_stats(const classify_images *set, const int32_t *index, int64_t n,
                            double *mean, double *std);

/* lut (channels, 256): the float each byte value becomes in each channel,
 * (v/255 − mean)/std, or v/255 when mean is NULL. A std of 0 (a constant
 * channel) divides by 1 instead. */
void classify_lut_fill(int32_t channels, const double *mean, const double *std, float *lut);

/* One image (channels, height, width) as patches: out (T, P·P·C) with
 * T = (height/P)·(width/P) patches in row-major order of the patch grid,
 * and inside a patch pixels row-major, each pixel's channels together:
 *   out[(py·(width/P) + px)·P·P·C + (y·P + x)·C + c]
 *     = lut[c·256 + pixel c of the view at row py·P + y, column px·P + x].
 * Padding pixels are byte 0 (black) before the table, as torchvision pads
 * before normalising. view may be NULL (the image itself). */
void classify_patchify(const uint8_t *image, int32_t channels, int32_t height, int32_t width,
                       int32_t patch, const classify_view *view, const float *lut, float *out);

#endif
