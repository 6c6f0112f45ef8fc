/* HAT's latency predictor: a ReLU MLP trained with Adam (mlp.h).
 *
 * Shapes: B rows of a batch, f inputs, H hidden units, L Linear layers
 * (L = hidden_layers + 2). Activation k (k = 0..L) has width w_k: w_0 = f,
 * w_1..w_{L-1} = H, w_L = 1. Layer l maps activation l to l + 1 with weight
 * W_l (w_{l+1}, w_l) and bias b_l (w_{l+1}); ReLU follows every layer but
 * the last. Parameters sit in one array carved in layer order, and a batch's
 * activations in one arena carved by width. */
#include "mlp.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <etnas/plugin.h>
#include <etnas/rng.h>

#include "fit_input.h"
#include "stats.h"

struct mlp {
    int64_t in, hidden;
    int32_t layers; /* L Linear layers */
    int64_t n_params;
    float *params;  /* n_params */
    float *x_scale; /* in */
    float y_scale;
    double train_loss;
};

/* Scratch of forward and backward for up to `rows` rows. */
typedef struct mlp_work {
    int64_t rows;
    float *act;    /* activations 1..L, rows x w_k each, in order */
    float *d0, *d1; /* gradient ping-pong, rows x max(H, 1) */
} mlp_work;

enum { MLP_FORMAT_VERSION = 1, MLP_HEADER_BYTES = 4 + 4 + 4 + 4 + 4 + 4 + 8 };
enum { MLP_PREDICT_CHUNK = 256 };
static const uint8_t mlp_magic[4] = {'E', 'T', 'M', 'L'};

#define fail et_fit_fail /* the shared message builder, under this file's short name */

static int check_shape(int64_t n, int64_t f, char **err)
{
    return et_fit_check_shape("mlp", n, f, 1 << 20, err);
}

static int check_finite(const float *v, int64_t count, int64_t row_len, const char *what,
                        char **err)
{
    return et_fit_check_finite("mlp", v, count, row_len, what, err);
}

void mlp_config_default(mlp_config *cfg)
{
    cfg->hidden = 400;
    cfg->hidden_layers = 3;
    cfg->lr = 1e-5;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->batch = 128;
    cfg->steps = 5000;
    cfg->seed = 0;
}

static int64_t width(const mlp *m, int32_t k)
{
    return k == 0 ? m->in : k == m->layers ? 1 : m->hidden;
}

/* Where layer l's weight starts in params. */
static int64_t layer_offset(const mlp *m, int32_t l)
{
    int64_t off = 0;
    for (int32_t j = 0; j < l; j++)
        off += width(m, j + 1) * (width(m, j) + 1);
    return off;
}

/* Activation k (1..L) of a work arena. */
static float *act_of(const mlp *m, const mlp_work *w, int32_t k)
{
    int64_t off = 0;
    for (int32_t j = 1; j < k; j++)
        off += w->rows * width(m, j);
    return w->act + off;
}

static void work_free(mlp_work *w)
{
    free(w->act);
    free(w->d0);
    w->act = w->d0 = w->d1 = NULL;
}

static int work_alloc(const mlp *m, int64_t rows, mlp_work *w, char **err)
{
    int64_t acts = 0;
    for (int32_t k = 1; k <= m->layers; k++)
        acts += rows * width(m, k);
    int64_t dmax = m->hidden > 1 ? m->hidden : 1;
    w->rows = rows;
    w->act = malloc((size_t)acts * sizeof *w->act);
    w->d0 = malloc(2 * (size_t)(rows * dmax) * sizeof *w->d0);
    if (!w->act || !w->d0) {
        work_free(w);
        return fail(err, ET_STATUS_ERR_NOMEM, "mlp: out of memory for a %lld-row batch",
                    (long long)rows);
    }
    w->d1 = w->d0 + rows * dmax;
    return 0;
}

/* a (B, in), weight (out, in), bias (out) -> z (B, out) = a weight^T + bias */
static void linear_forward(const float *a, const float *weight, const float *bias, float *z,
                           int64_t rows, int64_t in, int64_t out)
{
    for (int64_t r = 0; r < rows; r++)
        memcpy(z + r * out, bias, (size_t)out * sizeof *z);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)out, (int)in, 1.0f, a,
                (int)in, weight, (int)in, 1.0f, z, (int)out);
}

/* dz (B, out), a (B, in), weight (out, in) -> dweight (out, in) = dz^T a,
 * dbias (out) = sum over rows of dz, and da (B, in) = dz weight unless NULL. */
static void linear_backward(const float *dz, const float *a, const float *weight, float *dweight,
                            float *dbias, float *da, int64_t rows, int64_t in, int64_t out)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)rows, 1.0f, dz,
                (int)out, a, (int)in, 0.0f, dweight, (int)in);
    for (int64_t o = 0; o < out; o++)
        dbias[o] = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++)
            dbias[o] += dz[r * out + o];
    if (da)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)in, (int)out, 1.0f,
                    dz, (int)out, weight, (int)in, 0.0f, da, (int)in);
}

/* xs (B, f) scaled inputs -> the output activation (B, 1) in w. */
static const float *forward(const mlp *m, const float *xs, int64_t rows, const mlp_work *w)
{
    const float *a = xs;
    int64_t off = 0;
    for (int32_t l = 0; l < m->layers; l++) {
        int64_t in = width(m, l), out = width(m, l + 1);
        const float *weight = m->params + off, *bias = weight + out * in;
        off += out * (in + 1);
        float *z = act_of(m, w, l + 1);
        linear_forward(a, weight, bias, z, rows, in, out);
        if (l + 1 < m->layers)
            for (int64_t i = 0; i < rows * out; i++)
                z[i] = z[i] > 0 ? z[i] : 0;
        a = z;
    }
    return a;
}

/* dout (B, 1) = d loss / d output, after forward on xs (B, f) -> grad
 * (n_params), overwritten. */
static void backward(const mlp *m, const float *xs, const float *dout, int64_t rows,
                     mlp_work *w, float *grad)
{
    float *dz = w->d0, *da = w->d1;
    memcpy(dz, dout, (size_t)rows * sizeof *dz);
    for (int32_t l = m->layers - 1; l >= 0; l--) {
        int64_t in = width(m, l), out = width(m, l + 1), off = layer_offset(m, l);
        const float *a = l == 0 ? xs : act_of(m, w, l);
        const float *weight = m->params + off;
        linear_backward(dz, a, weight, grad + off, grad + off + out * in, l == 0 ? NULL : da,
                        rows, in, out);
        if (l == 0)
            break;
        /* ReLU: the gradient passes where the activation is positive */
        for (int64_t i = 0; i < rows * in; i++)
            if (!(a[i] > 0))
                da[i] = 0;
        float *t = dz;
        dz = da;
        da = t;
    }
}

static int check_net(const mlp_config *cfg, char **err)
{
    if (cfg->hidden < 1 || cfg->hidden > (1 << 16))
        return fail(err, ET_STATUS_ERR_USAGE, "mlp: hidden %d is outside 1..%d",
                    (int)cfg->hidden, 1 << 16);
    if (cfg->hidden_layers < 0 || cfg->hidden_layers > 64)
        return fail(err, ET_STATUS_ERR_USAGE, "mlp: hidden_layers %d is outside 0..64",
                    (int)cfg->hidden_layers);
    return 0;
}

static int check_training(const mlp_config *cfg, char **err)
{
    int rc = check_net(cfg, err);
    if (rc)
        return rc;
    if (!(cfg->lr > 0 && isfinite(cfg->lr)))
        return fail(err, ET_STATUS_ERR_USAGE, "mlp: learning rate %g must be positive",
                    cfg->lr);
    if (!(cfg->beta1 >= 0 && cfg->beta1 < 1) || !(cfg->beta2 >= 0 && cfg->beta2 < 1))
        return fail(err, ET_STATUS_ERR_USAGE, "mlp: Adam betas %g, %g must be in [0, 1)",
                    cfg->beta1, cfg->beta2);
    if (!(cfg->eps > 0 && isfinite(cfg->eps)))
        return fail(err, ET_STATUS_ERR_USAGE, "mlp: Adam eps %g must be positive", cfg->eps);
    if (cfg->batch < 1 || cfg->batch > (1 << 20))
        return fail(err, ET_STATUS_ERR_USAGE, "mlp: batch %d is outside 1..%d",
                    (int)cfg->batch, 1 << 20);
    if (cfg->steps < 1)
        return fail(err, ET_STATUS_ERR_USAGE, "mlp: steps %lld must be at least 1",
                    (long long)cfg->steps);
    return 0;
}

/* A network with uninitialised parameters and unit scales. */
static int alloc_net(int64_t f, int64_t hidden, int32_t layers, mlp **out, char **err)
{
    mlp *m = calloc(1, sizeof *m);
    if (!m)
        return fail(err, ET_STATUS_ERR_NOMEM, "mlp: out of memory");
    m->in = f;
    m->hidden = hidden;
    m->layers = layers;
    m->n_params = layer_offset(m, layers);
    m->params = malloc((size_t)m->n_params * sizeof *m->params);
    m->x_scale = malloc((size_t)f * sizeof *m->x_scale);
    if (!m->params || !m->x_scale) {
        int64_t n_params = m->n_params;
        mlp_destroy(m);
        return fail(err, ET_STATUS_ERR_NOMEM, "mlp: out of memory for %lld parameters",
                    (long long)n_params);
    }
    for (int64_t j = 0; j < f; j++)
        m->x_scale[j] = 1;
    m->y_scale = 1;
    m->train_loss = NAN;
    *out = m;
    return 0;
}

int mlp_create(const mlp_config *cfg, int64_t f, mlp **out, char **err)
{
    *out = NULL;
    int rc = check_net(cfg, err);
    if (!rc)
        rc = check_shape(1, f, err);
    if (!rc)
        rc = alloc_net(f, cfg->hidden, cfg->hidden_layers + 2, out, err);
    if (rc)
        return rc;
    mlp *m = *out;
    /* nn.Linear's default: kaiming_uniform(a = sqrt 5) for the weight, which
     * is uniform in +-1/sqrt(fan_in), and the same bound for the bias */
    et_rng root = et_rng_from_seed(cfg->seed), rng = et_rng_split(&root, 1);
    float *p = m->params;
    for (int32_t l = 0; l < m->layers; l++) {
        int64_t in = width(m, l), count = width(m, l + 1) * (in + 1);
        double bound = 1.0 / sqrt((double)in);
        for (int64_t i = 0; i < count; i++)
            p[i] = (float)((2.0 * et_rng_uniform(&rng) - 1.0) * bound);
        p += count;
    }
    return 0;
}

int mlp_loss_grad(const mlp *m, const float *xs, const float *ys, int64_t n, double *loss,
                  float *grad, char **err)
{
    int rc = check_shape(n, m->in, err);
    if (rc)
        return rc;
    if (n > (1 << 20))
        return fail(err, ET_STATUS_ERR_USAGE, "mlp: %lld rows in one batch; at most %d",
                    (long long)n, 1 << 20);
    mlp_work w;
    float *dout = malloc((size_t)n * sizeof *dout);
    if (!dout)
        return fail(err, ET_STATUS_ERR_NOMEM, "mlp: out of memory");
    if ((rc = work_alloc(m, n, &w, err)) != 0) {
        free(dout);
        return rc;
    }
    const float *o = forward(m, xs, n, &w);
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)o[i] - ys[i];
        s += e * e;
        dout[i] = (float)(2.0 * e / (double)n);
    }
    *loss = s / (double)n;
    if (grad)
        backward(m, xs, dout, n, &w, grad);
    work_free(&w);
    free(dout);
    return 0;
}

/* The training rows scaled: xs (n, f), ys (n). */
static void set_scales(mlp *m, const float *x, const float *y, int64_t n, const float *x_max)
{
    for (int64_t j = 0; j < m->in; j++) {
        float s = 0;
        if (x_max)
            s = x_max[j];
        else
            for (int64_t i = 0; i < n; i++)
                s = fmaxf(s, fabsf(x[i * m->in + j]));
        m->x_scale[j] = s > 0 ? s : 1;
    }
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s = fmaxf(s, fabsf(y[i]));
    m->y_scale = s > 0 ? s : 1;
}

static void scale_rows(const mlp *m, const float *x, int64_t rows, float *xs)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < m->in; j++)
            xs[i * m->in + j] = x[i * m->in + j] / m->x_scale[j];
}

static void shuffle(int64_t *perm, int64_t n, et_rng *rng)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)et_rng_below(rng, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* PyTorch's Adam (no weight decay) at update t (1-based). */
static void adam_update(float *p, const float *g, float *mom, float *vel, int64_t count,
                        const mlp_config *cfg, int64_t t)
{
    double c1 = 1.0 - pow(cfg->beta1, (double)t), c2 = 1.0 - pow(cfg->beta2, (double)t);
    float step = (float)(cfg->lr / c1), root_c2 = (float)sqrt(c2);
    float b1 = (float)cfg->beta1, b2 = (float)cfg->beta2, eps = (float)cfg->eps;
    for (int64_t i = 0; i < count; i++) {
        mom[i] = b1 * mom[i] + (1 - b1) * g[i];
        vel[i] = b2 * vel[i] + (1 - b2) * g[i] * g[i];
        p[i] -= step * mom[i] / (sqrtf(vel[i]) / root_c2 + eps);
    }
}

/* The update loop; m is initialised and scaled, xs/ys are the scaled rows. */
static int fit(mlp *m, const mlp_config *cfg, const float *xs, const float *ys, int64_t n,
               char **err)
{
    int64_t batch = cfg->batch < n ? cfg->batch : n, np = m->n_params, f = m->in;
    float *state = calloc(3 * (size_t)np, sizeof *state);
    float *bx = malloc((size_t)(batch * f) * sizeof *bx);
    float *by = malloc((size_t)batch * 2 * sizeof *by);
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    mlp_work w = {0};
    int rc = 0;
    if (!state || !bx || !by || !perm)
        rc = fail(err, ET_STATUS_ERR_NOMEM, "mlp: out of memory for training");
    if (!rc)
        rc = work_alloc(m, batch, &w, err);
    if (rc) {
        free(state);
        free(bx);
        free(by);
        free(perm);
        return rc;
    }
    float *grad = state, *mom = state + np, *vel = state + 2 * np, *dout = by + batch;
    et_rng root = et_rng_from_seed(cfg->seed), rng = et_rng_split(&root, 2);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    int64_t pos = n, epoch_rows = 0;
    double epoch_sum = 0;
    for (int64_t t = 1; t <= cfg->steps; t++) {
        if (pos >= n) {
            shuffle(perm, n, &rng);
            pos = 0;
            epoch_rows = 0;
            epoch_sum = 0;
        }
        int64_t rows = n - pos < batch ? n - pos : batch;
        for (int64_t i = 0; i < rows; i++) {
            memcpy(bx + i * f, xs + perm[pos + i] * f, (size_t)f * sizeof *bx);
            by[i] = ys[perm[pos + i]];
        }
        pos += rows;
        const float *o = forward(m, bx, rows, &w);
        double s = 0;
        for (int64_t i = 0; i < rows; i++) {
            double e = (double)o[i] - by[i];
            s += e * e;
            dout[i] = (float)(2.0 * e / (double)rows);
        }
        if (!isfinite(s)) {
            rc = fail(err, ET_STATUS_ERR_NUMERIC,
                      "mlp: training diverged at step %lld (non-finite loss); lower the "
                      "learning rate",
                      (long long)t);
            break;
        }
        epoch_sum += s;
        epoch_rows += rows;
        backward(m, bx, dout, rows, &w, grad);
        adam_update(m->params, grad, mom, vel, np, cfg, t);
    }
    m->train_loss = epoch_sum / (double)epoch_rows;
    work_free(&w);
    free(state);
    free(bx);
    free(by);
    free(perm);
    return rc;
}

int mlp_train(const mlp_config *cfg, const float *x, const float *y, int64_t n, int64_t f,
              const float *x_max, mlp **out, char **err)
{
    *out = NULL;
    int rc = check_training(cfg, err);
    if (!rc)
        rc = check_shape(n, f, err);
    if (!rc)
        rc = check_finite(x, n * f, f, "the feature matrix", err);
    if (!rc)
        rc = check_finite(y, n, 1, "the target vector", err);
    if (!rc && x_max)
        for (int64_t j = 0; j < f; j++)
            if (!(x_max[j] > 0 && isfinite(x_max[j])))
                return fail(err, ET_STATUS_ERR_USAGE,
                            "mlp: the scale of feature %lld is %g; scales must be positive",
                            (long long)j, (double)x_max[j]);
    if (rc)
        return rc;
    mlp *m;
    if ((rc = mlp_create(cfg, f, &m, err)) != 0)
        return rc;
    set_scales(m, x, y, n, x_max);
    float *xs = malloc((size_t)(n * f) * sizeof *xs), *ys = malloc((size_t)n * sizeof *ys);
    if (!xs || !ys)
        rc = fail(err, ET_STATUS_ERR_NOMEM, "mlp: out of memory for %lld rows", (long long)n);
    if (!rc) {
        scale_rows(m, x, n, xs);
        for (int64_t i = 0; i < n; i++)
            ys[i] = y[i] / m->y_scale;
        rc = fit(m, cfg, xs, ys, n, err);
    }
    free(xs);
    free(ys);
    if (rc) {
        mlp_destroy(m);
        return rc;
    }
    *out = m;
    return 0;
}

int mlp_predict(const mlp *m, const float *x, int64_t n, float *y, char **err)
{
    int rc = check_shape(n, m->in, err);
    if (!rc)
        rc = check_finite(x, n * m->in, m->in, "the feature matrix", err);
    if (rc)
        return rc;
    int64_t chunk = n < MLP_PREDICT_CHUNK ? n : MLP_PREDICT_CHUNK;
    mlp_work w;
    float *xs = malloc((size_t)(chunk * m->in) * sizeof *xs);
    if (!xs)
        return fail(err, ET_STATUS_ERR_NOMEM, "mlp: out of memory");
    if ((rc = work_alloc(m, chunk, &w, err)) != 0) {
        free(xs);
        return rc;
    }
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        int64_t rows = n - r0 < chunk ? n - r0 : chunk;
        scale_rows(m, x + r0 * m->in, rows, xs);
        const float *o = forward(m, xs, rows, &w);
        for (int64_t i = 0; i < rows; i++)
            y[r0 + i] = o[i] * m->y_scale;
    }
    work_free(&w);
    free(xs);
    return 0;
}

int mlp_evaluate(const mlp *m, const float *x, const float *y, int64_t n, double *rmse,
                 double *tau, char **err)
{
    int rc = check_shape(n, m->in, err);
    if (!rc)
        rc = check_finite(y, n, 1, "the target vector", err);
    if (rc)
        return rc;
    float *pred = malloc((size_t)n * sizeof *pred);
    double *pair = malloc(2 * (size_t)n * sizeof *pair);
    if (!pred || !pair) {
        free(pred);
        free(pair);
        return fail(err, ET_STATUS_ERR_NOMEM, "mlp: out of memory for %lld rows",
                    (long long)n);
    }
    if ((rc = mlp_predict(m, x, n, pred, err)) == 0) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            double e = (double)pred[i] - y[i];
            s += e * e;
            pair[i] = pred[i];
            pair[n + i] = y[i];
        }
        *rmse = sqrt(s / (double)n);
        *tau = et_kendall_tau(pair, pair + n, (size_t)n);
    }
    free(pred);
    free(pair);
    return rc;
}

int64_t mlp_features(const mlp *m)
{
    return m->in;
}

double mlp_train_loss(const mlp *m)
{
    return m->train_loss;
}

int64_t mlp_param_count(const mlp *m)
{
    return m->n_params;
}

float *mlp_params(mlp *m)
{
    return m->params;
}

int32_t mlp_layer_count(const mlp *m)
{
    return m->layers;
}

int64_t mlp_layer_in(const mlp *m, int32_t l)
{
    return width(m, l);
}

int64_t mlp_layer_out(const mlp *m, int32_t l)
{
    return width(m, l + 1);
}

const float *mlp_x_scale(const mlp *m)
{
    return m->x_scale;
}

float mlp_y_scale(const mlp *m)
{
    return m->y_scale;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static void put_f32(uint8_t *p, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_u32(p, bits);
}

static float get_f32(const uint8_t *p)
{
    uint32_t bits = get_u32(p);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* Saved form: magic, version, in, hidden, layers, y_scale, train_loss (two
 * 32-bit halves, low first), then x_scale (in) and params, all little-endian. */
int mlp_save(const mlp *m, uint8_t **buf, size_t *len, char **err)
{
    *buf = NULL;
    *len = 0;
    size_t total = MLP_HEADER_BYTES + 4 * (size_t)(m->in + m->n_params);
    uint8_t *p = malloc(total);
    if (!p)
        return fail(err, ET_STATUS_ERR_NOMEM, "mlp: out of memory for a %zu-byte model", total);
    uint64_t loss_bits;
    memcpy(&loss_bits, &m->train_loss, sizeof loss_bits);
    memcpy(p, mlp_magic, 4);
    put_u32(p + 4, MLP_FORMAT_VERSION);
    put_u32(p + 8, (uint32_t)m->in);
    put_u32(p + 12, (uint32_t)m->hidden);
    put_u32(p + 16, (uint32_t)m->layers);
    put_f32(p + 20, m->y_scale);
    put_u32(p + 24, (uint32_t)loss_bits);
    put_u32(p + 28, (uint32_t)(loss_bits >> 32));
    uint8_t *q = p + MLP_HEADER_BYTES;
    for (int64_t j = 0; j < m->in; j++, q += 4)
        put_f32(q, m->x_scale[j]);
    for (int64_t i = 0; i < m->n_params; i++, q += 4)
        put_f32(q, m->params[i]);
    *buf = p;
    *len = total;
    return 0;
}

int mlp_load(const uint8_t *buf, size_t len, mlp **out, char **err)
{
    *out = NULL;
    if (len < MLP_HEADER_BYTES || memcmp(buf, mlp_magic, 4) != 0)
        return fail(err, ET_STATUS_ERR_FORMAT, "mlp: not a saved predictor (%zu bytes)", len);
    uint32_t version = get_u32(buf + 4);
    if (version != MLP_FORMAT_VERSION)
        return fail(err, ET_STATUS_ERR_FORMAT,
                    "mlp: saved format version %u; this build reads %d (train it again)",
                    (unsigned)version, MLP_FORMAT_VERSION);
    uint32_t in = get_u32(buf + 8), hidden = get_u32(buf + 12), layers = get_u32(buf + 16);
    float y_scale = get_f32(buf + 20);
    uint64_t loss_bits = get_u32(buf + 24) | (uint64_t)get_u32(buf + 28) << 32;
    if (in < 1 || in > (1u << 20) || hidden < 1 || hidden > (1u << 16) || layers < 2 ||
        layers > 66 || !(y_scale > 0 && isfinite(y_scale)))
        return fail(err, ET_STATUS_ERR_FORMAT, "mlp: the saved header is corrupt");
    mlp *m;
    int rc = alloc_net(in, hidden, (int32_t)layers, &m, err);
    if (rc)
        return rc;
    size_t want = MLP_HEADER_BYTES + 4 * (size_t)(m->in + m->n_params);
    if (len != want) {
        mlp_destroy(m);
        return fail(err, ET_STATUS_ERR_FORMAT,
                    "mlp: a %u-%u-x%u network takes %zu bytes, not %zu (truncated?)",
                    (unsigned)in, (unsigned)hidden, (unsigned)layers, want, len);
    }
    const uint8_t *q = buf + MLP_HEADER_BYTES;
    for (int64_t j = 0; j < m->in; j++, q += 4)
        m->x_scale[j] = get_f32(q);
    for (int64_t i = 0; i < m->n_params; i++, q += 4)
        m->params[i] = get_f32(q);
    for (int64_t j = 0; j < m->in && !rc; j++)
        if (!(m->x_scale[j] > 0 && isfinite(m->x_scale[j])))
            rc = fail(err, ET_STATUS_ERR_FORMAT, "mlp: saved scale of feature %lld is %g",
                      (long long)j, (double)m->x_scale[j]);
    if (!rc)
        rc = check_finite(m->params, m->n_params, m->n_params, "the saved parameter array",
                          err);
    if (rc) {
        mlp_destroy(m);
        return rc == ET_STATUS_ERR_NUMERIC ? ET_STATUS_ERR_FORMAT : rc;
    }
    m->y_scale = y_scale;
    memcpy(&m->train_loss, &loss_bits, sizeof m->train_loss);
    *out = m;
    return 0;
}

void mlp_destroy(mlp *m)
{
    if (!m)
        return;
    free(m->params);
    free(m->x_scale);
    free(m);
}
