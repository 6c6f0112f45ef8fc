/* Byte images to normalised float patches for the classify task; the layout
 * is documented at classify_patchify in classify_patch.h. */
#include "classify_patch.h"

#include <math.h>

void classify_channel_stats(const classify_images *set, const int32_t *index, int64_t n,
                            double *mean, double *std)
{
    /* A histogram per channel makes the sums exact whatever the order, and
     * an integer pixel sum makes a constant channel's mean exactly its value,
     * so its std comes out exactly 0. */
    int64_t plane = (int64_t)set->height * set->width;
    for (int32_t c = 0; c < set->channels; c++) {
        uint64_t hist[256] = {0};
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *p = set->pixels + ((int64_t)index[i] * set->channels + c) * plane;
            for (int64_t k = 0; k < plane; k++)
                hist[p[k]]++;
        }
        uint64_t sum = 0;
        for (int v = 0; v < 256; v++)
            sum += hist[v] * (uint64_t)v;
        double count = (double)n * (double)plane, var = 0;
        mean[c] = count > 0 ? (double)sum / count / 255.0 : 0;
        for (int v = 0; v < 256; v++) {
            double d = v / 255.0 - mean[c];
            var += (double)hist[v] * d * d;
        }
        std[c] = count > 0 ? sqrt(var / count) : 0;
    }
}

void classify_lut_fill(int32_t channels, const double *mean, const double *std, float *lut)
{
    for (int32_t c = 0; c < channels; c++)
        for (int v = 0; v < 256; v++) {
            double x = v / 255.0;
            if (mean)
                x = (x - mean[c]) / (std[c] > 0 ? std[c] : 1.0);
            lut[c * 256 + v] = (float)x;
        }
}

void classify_patchify(const uint8_t *image, int32_t channels, int32_t height, int32_t width,
                       int32_t patch, const classify_view *view, const float *lut, float *out)
{
    static const classify_view identity = {0, 0, 0, 0};
    if (!view)
        view = &identity;
    int32_t grid_w = width / patch, dim = patch * patch * channels;
    int64_t plane = (int64_t)height * width;
    for (int32_t y = 0; y < height; y++) {
        int32_t sy = y + view->dy - view->pad;
        for (int32_t x = 0; x < width; x++) {
            int32_t sx = (view->flip ? width - 1 - x : x) + view->dx - view->pad;
            int inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
            const uint8_t *src = image + (inside ? (int64_t)sy * width + sx : 0);
            float *o = out + (int64_t)((y / patch) * grid_w + x / patch) * dim +
                       ((y % patch) * patch + x % patch) * channels;
            for (int32_t c = 0; c < channels; c++)
                o[c] = lut[c * 256 + (inside ? src[c * plane] : 0)];
        }
    }
}
