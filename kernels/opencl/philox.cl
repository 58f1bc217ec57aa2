// Philox4x32-10 counter-based generator: the same streams as the cpu and CUDA backends
// (see jz_k_rand_uniform in include/jazari/kernels.h).
uint4 jzk_philox(uint4 c, uint k0, uint k1)
{
    for (int r = 0; r < 10; r++) {
        uint hi0 = mul_hi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
        uint hi1 = mul_hi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
        c = (uint4)(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c;
}

// One work-item per Philox block; `first` is the first block, out[e - offset] for the elements
// e of the block that fall in [offset, offset + n).
__kernel void jzk_rand(ulong first, ulong nblocks, ulong seed, ulong offset, uint n, int dist,
                       float a, float b, __global float *out)
{
    ulong bi = get_global_id(0);
    if (bi >= nblocks)
        return;
    ulong blk = first + bi;
    uint4 c = jzk_philox((uint4)((uint)blk, (uint)(blk >> 32), 0u, 0u), (uint)seed,
                         (uint)(seed >> 32));
    uint w[4] = {c.x, c.y, c.z, c.w};
    float v[4];
    const float two_m24 = 5.9604644775390625e-8f;
    if (dist == 0) {
        for (int l = 0; l < 4; l++)
            v[l] = fma(b - a, (float)(w[l] >> 8) * two_m24, a);
    } else {
        for (int l = 0; l < 4; l += 2) {
            float u1 = (float)((w[l] >> 8) + 1u) * two_m24;
            float u2 = (float)(w[l + 1] >> 8) * two_m24;
            float r = sqrt(-2.0f * log(u1)), t = 6.2831853071795865f * u2;
            v[l] = fma(b, r * cos(t), a);
            v[l + 1] = fma(b, r * sin(t), a);
        }
    }
    for (int l = 0; l < 4; l++) {
        ulong e = blk * 4 + (ulong)l;
        if (e >= offset && e - offset < n)
            out[e - offset] = v[l];
    }
}
