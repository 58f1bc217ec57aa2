// Simulation kernels: explicit heat-diffusion stencils and all-pairs N-body.

// The cell whose value index i stands for along an axis of n cells (jzk_bc_src in internal.h):
// bc 0 Dirichlet, 1 Neumann, 2 periodic; lo/hi: that face is a domain boundary, not a halo.
uint jzk_bc_src(uint i, uint n, int bc, int lo, int hi)
{
    if (bc == 0)
        return i;
    if (i == 0 && lo)
        return bc == 2 ? n - 2 : 1;
    if (i == n - 1 && hi)
        return bc == 2 ? 1 : n - 2;
    return i;
}

// Whether cell i of an axis is copied (a halo face, or a Dirichlet boundary).
int jzk_bc_copy(uint i, uint n, int bc, uint halo, uint face_bits)
{
    int lo = i == 0, hi = i == n - 1;
    if ((lo && (halo & face_bits & 0x15u)) || (hi && (halo & face_bits & 0x2Au)))
        return 1;
    return bc == 0 && (lo || hi);
}

__kernel void jzk_heat2d(uint nx, uint ny, float alpha, int bc, uint halo,
                         __global const float *in, __global float *out)
{
    uint x = get_global_id(0), y = get_global_id(1);
    if (x >= nx || y >= ny)
        return;
    size_t i = (size_t)y * nx + x;
    if (jzk_bc_copy(x, nx, bc, halo, 0x03u) || jzk_bc_copy(y, ny, bc, halo, 0x0Cu)) {
        out[i] = in[i];
        return;
    }
    int xl = !(halo & 0x01u), xh = !(halo & 0x02u), yl = !(halo & 0x04u), yh = !(halo & 0x08u);
    uint mx = jzk_bc_src(x, nx, bc, xl, xh), my = jzk_bc_src(y, ny, bc, yl, yh);
    size_t row = (size_t)my * nx;
    float l = in[row + jzk_bc_src(mx - 1, nx, bc, xl, xh)];
    float r = in[row + jzk_bc_src(mx + 1, nx, bc, xl, xh)];
    float d = in[(size_t)jzk_bc_src(my - 1, ny, bc, yl, yh) * nx + mx];
    float u = in[(size_t)jzk_bc_src(my + 1, ny, bc, yl, yh) * nx + mx];
    out[i] = (1.0f - 4.0f * alpha) * in[row + mx] + alpha * ((l + r) + (d + u));
}

__kernel void jzk_heat3d(uint nx, uint ny, uint nz, float alpha, int bc, uint halo,
                         __global const float *in, __global float *out)
{
    uint x = get_global_id(0), y = get_global_id(1), z = get_global_id(2);
    if (x >= nx || y >= ny || z >= nz)
        return;
    size_t pl = (size_t)nx * ny, i = z * pl + (size_t)y * nx + x;
    if (jzk_bc_copy(x, nx, bc, halo, 0x03u) || jzk_bc_copy(y, ny, bc, halo, 0x0Cu) ||
        jzk_bc_copy(z, nz, bc, halo, 0x30u)) {
        out[i] = in[i];
        return;
    }
    int xl = !(halo & 0x01u), xh = !(halo & 0x02u), yl = !(halo & 0x04u), yh = !(halo & 0x08u);
    int zl = !(halo & 0x10u), zh = !(halo & 0x20u);
    uint mx = jzk_bc_src(x, nx, bc, xl, xh), my = jzk_bc_src(y, ny, bc, yl, yh);
    uint mz = jzk_bc_src(z, nz, bc, zl, zh);
    size_t c = mz * pl + (size_t)my * nx;
    float l = in[c + jzk_bc_src(mx - 1, nx, bc, xl, xh)];
    float r = in[c + jzk_bc_src(mx + 1, nx, bc, xl, xh)];
    float d = in[mz * pl + (size_t)jzk_bc_src(my - 1, ny, bc, yl, yh) * nx + mx];
    float u = in[mz * pl + (size_t)jzk_bc_src(my + 1, ny, bc, yl, yh) * nx + mx];
    float b = in[jzk_bc_src(mz - 1, nz, bc, zl, zh) * pl + (size_t)my * nx + mx];
    float f = in[jzk_bc_src(mz + 1, nz, bc, zl, zh) * pl + (size_t)my * nx + mx];
    out[i] = (1.0f - 6.0f * alpha) * in[c + mx] + alpha * (((l + r) + (d + u)) + (b + f));
}

// Bodies [first, first + count), each summing over all n in the same order whatever the range.
__kernel void jzk_nbody(uint n, uint first, uint count, float soft2, __global const float4 *pos,
                        __global float4 *acc)
{
    size_t g = get_global_id(0);
    if (g >= count)
        return;
    size_t i = first + g;
    float4 pi = pos[i];
    float3 a = (float3)(0.0f);
    for (uint j = 0; j < n; j++) {
        float4 pj = pos[j];
        float3 d = pj.xyz - pi.xyz;
        float r2 = dot(d, d) + soft2;
        float inv = rsqrt(r2);
        a += (pj.w * inv * inv * inv) * d;
    }
    acc[i] = (float4)(a, 0.0f);
}

__kernel void jzk_leapfrog(uint n, float dt, __global float4 *pos, __global float4 *vel,
                           __global const float4 *acc)
{
    size_t i = get_global_id(0);
    if (i >= n)
        return;
    float4 v = vel[i], p = pos[i], a = acc[i];
    v.xyz += dt * a.xyz;
    p.xyz += dt * v.xyz;
    vel[i] = v;
    pos[i] = p;
}
