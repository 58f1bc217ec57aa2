// Neural-network kernels: fused bias + activation, softmax + cross-entropy, optimizer updates,
// elementwise helpers. Sizes fit int32 (checked by the front end).
#define JZK_GELU_K0 0.7978845608028654f
#define JZK_GELU_K1 0.044715f

float jzk_act(int act, float z)
{
    if (act == 1)
        return z > 0.0f ? z : 0.0f;
    if (act == 2)
        return 0.5f * z * (1.0f + tanh(JZK_GELU_K0 * (z + JZK_GELU_K1 * z * z * z)));
    return z;
}

float jzk_dact(int act, float z)
{
    if (act == 1)
        return z > 0.0f ? 1.0f : 0.0f;
    if (act == 2) {
        float t = tanh(JZK_GELU_K0 * (z + JZK_GELU_K1 * z * z * z));
        return 0.5f * (1.0f + t) +
               0.5f * z * (1.0f - t * t) * JZK_GELU_K0 * (1.0f + 3.0f * JZK_GELU_K1 * z * z);
    }
    return 1.0f;
}

__kernel void jzk_bias_act_fwd(uint rows, uint cols, int act, int has_bias,
                               __global const float *x, __global const float *bias,
                               __global float *y)
{
    size_t i = get_global_id(0);
    if (i >= (size_t)rows * cols)
        return;
    float z = x[i] + (has_bias ? bias[i % cols] : 0.0f);
    y[i] = jzk_act(act, z);
}

__kernel void jzk_bias_act_bwd(uint rows, uint cols, int act, int has_bias,
                               __global const float *x, __global const float *bias,
                               __global const float *dy, __global float *dx)
{
    size_t i = get_global_id(0);
    if (i >= (size_t)rows * cols)
        return;
    float z = x[i] + (has_bias ? bias[i % cols] : 0.0f);
    dx[i] = dy[i] * jzk_dact(act, z);
}

// dbias[c] = sum over rows of d[r, c]; one work-item per column (reads coalesce across columns).
__kernel void jzk_col_sum(uint rows, uint cols, __global const float *d, __global float *out)
{
    size_t c = get_global_id(0);
    if (c >= cols)
        return;
    float s = 0.0f;
    for (size_t r = 0; r < rows; r++)
        s += d[r * cols + c];
    out[c] = s;
}

__kernel void jzk_xent_fwd(uint rows, uint cols, int has_loss, __global const float *logits,
                           __global const int *labels, __global float *probs,
                           __global float *loss)
{
    size_t r = get_global_id(0);
    if (r >= rows)
        return;
    __global const float *l = logits + r * cols;
    __global float *p = probs + r * cols;
    float mx = l[0];
    for (uint c = 1; c < cols; c++)
        mx = fmax(mx, l[c]);
    float s = 0.0f;
    for (uint c = 0; c < cols; c++) {
        float e = exp(l[c] - mx);
        p[c] = e;
        s += e;
    }
    float inv = 1.0f / s;
    for (uint c = 0; c < cols; c++)
        p[c] *= inv;
    if (has_loss) {
        int y = labels[r];
        loss[r] = (y >= 0 && (uint)y < cols) ? log(s) - (l[y] - mx) : 0.0f;
    }
}

__kernel void jzk_xent_bwd(uint rows, uint cols, float scale, __global const float *probs,
                           __global const int *labels, __global float *d)
{
    size_t i = get_global_id(0);
    if (i >= (size_t)rows * cols)
        return;
    int y = labels[i / cols];
    uint c = (uint)(i % cols);
    bool valid = y >= 0 && (uint)y < cols;
    d[i] = valid ? scale * (probs[i] - ((uint)y == c ? 1.0f : 0.0f)) : 0.0f;
}

__kernel void jzk_axpy(uint n, float alpha, __global const float *x, __global float *y)
{
    size_t i = get_global_id(0);
    if (i < n)
        y[i] += alpha * x[i];
}

__kernel void jzk_scale(uint n, float alpha, __global float *x)
{
    size_t i = get_global_id(0);
    if (i < n)
        x[i] *= alpha;
}

__kernel void jzk_fill(uint n, float value, __global float *x)
{
    size_t i = get_global_id(0);
    if (i < n)
        x[i] = value;
}

// Fills rows x cols of a matrix with row stride ld: zeroing C before a beta == 0 GEMM.
__kernel void jzk_fill2d(uint rows, uint cols, uint ld, float value, __global float *x)
{
    size_t c = get_global_id(0), r = get_global_id(1);
    if (r < rows && c < cols)
        x[r * ld + c] = value;
}

__kernel void jzk_sgd(uint n, float lr, float mom, float wd, __global float *p,
                      __global const float *g, __global float *v)
{
    size_t i = get_global_id(0);
    if (i >= n)
        return;
    float gi = g[i] + wd * p[i];
    float vi = mom * v[i] + gi;
    v[i] = vi;
    p[i] -= lr * vi;
}

__kernel void jzk_adam(uint n, float lr, float b1, float b2, float eps, float wd, float bc1,
                       float bc2, __global float *p, __global const float *g, __global float *m,
                       __global float *v)
{
    size_t i = get_global_id(0);
    if (i >= n)
        return;
    float gi = g[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float mh = mi / bc1, vh = vi / bc2;
    p[i] -= lr * (mh / (sqrt(vh) + eps) + wd * p[i]);
}
