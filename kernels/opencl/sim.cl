// Simulation kernels: explicit heat-diffusion stencils and all-pairs N-body.

__kernel void jzk_heat2d(uint nx, uint ny, float alpha, __global const float *in,
                         __global float *out)
{
    size_t x = get_global_id(0), y = get_global_id(1);
    if (x >= nx || y >= ny)
        return;
    size_t i = y * nx + x;
    if (x == 0 || y == 0 || x == nx - 1 || y == ny - 1) {
        out[i] = in[i];
        return;
    }
    out[i] = (1.0f - 4.0f * alpha) * in[i] +
             alpha * ((in[i - 1] + in[i + 1]) + (in[i - nx] + in[i + nx]));
}

__kernel void jzk_heat3d(uint nx, uint ny, uint nz, float alpha, __global const float *in,
                         __global float *out)
{
    size_t x = get_global_id(0), y = get_global_id(1), z = get_global_id(2);
    if (x >= nx || y >= ny || z >= nz)
        return;
    size_t pl = (size_t)nx * ny, i = z * pl + y * nx + x;
    if (x == 0 || y == 0 || z == 0 || x == nx - 1 || y == ny - 1 || z == nz - 1) {
        out[i] = in[i];
        return;
    }
    out[i] = (1.0f - 6.0f * alpha) * in[i] +
             alpha * ((in[i - 1] + in[i + 1]) + (in[i - nx] + in[i + nx]) +
                      (in[i - pl] + in[i + pl]));
}

__kernel void jzk_nbody(uint n, float soft2, __global const float4 *pos, __global float4 *acc)
{
    size_t i = get_global_id(0);
    if (i >= n)
        return;
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
