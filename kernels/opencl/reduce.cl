// Reductions: two passes (JZK_RED_WG items per group, a fixed number of groups write partials;
// one group combines them), row argmax and accuracy.
#define JZK_RED_WG 64

// kind 0: sum, 1: max (NaNs skipped: fmax returns the other operand).
__kernel void jzk_reduce(uint n, int kind, __global const float *x, __global float *out)
{
    __local float sh[JZK_RED_WG];
    size_t lid = get_local_id(0), gid = get_global_id(0), stride = get_global_size(0);
    float acc = kind == 0 ? 0.0f : NAN;
    for (size_t i = gid; i < n; i += stride)
        acc = kind == 0 ? acc + x[i] : fmax(acc, x[i]);
    sh[lid] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t s = JZK_RED_WG / 2; s > 0; s >>= 1) {
        if (lid < s)
            sh[lid] = kind == 0 ? sh[lid] + sh[lid + s] : fmax(sh[lid], sh[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0)
        out[get_group_id(0)] = sh[0];
}

int jzk_argmax_row(__global const float *x, uint cols)
{
    uint best = 0;
    for (uint c = 1; c < cols; c++)
        if (x[c] > x[best])
            best = c;
    return (int)best;
}

__kernel void jzk_argmax_rows(uint rows, uint cols, __global const float *x, __global int *out)
{
    size_t r = get_global_id(0);
    if (r < rows)
        out[r] = jzk_argmax_row(x + r * cols, cols);
}

// One group: counts rows whose argmax equals the label.
__kernel void jzk_accuracy(uint rows, uint cols, __global const float *x,
                           __global const int *labels, __global float *out)
{
    __local uint sh[JZK_RED_WG];
    size_t lid = get_local_id(0);
    uint hits = 0;
    for (size_t r = lid; r < rows; r += JZK_RED_WG)
        hits += jzk_argmax_row(x + r * cols, cols) == labels[r];
    sh[lid] = hits;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t s = JZK_RED_WG / 2; s > 0; s >>= 1) {
        if (lid < s)
            sh[lid] += sh[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0)
        out[0] = (float)sh[0] / (float)rows;
}
