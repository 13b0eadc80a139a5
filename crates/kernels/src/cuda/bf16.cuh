// bf16 storage for the elementwise kernels (activation.cu, norm.cu): bf16 values are raw 16-bit words,
// widened to f32 exactly (to_f) and rounded back to nearest even once (put); f32 passes through.
#pragma once

typedef unsigned short bf16_t;

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16_t h) { return __uint_as_float(((unsigned int)h) << 16); }

// Round to nearest, ties to even; NaN stays a (quiet) NaN, infinities stay infinities.
__device__ __forceinline__ void put(float* p, float v) { *p = v; }
__device__ __forceinline__ void put(bf16_t* p, float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) { *p = (bf16_t)((u >> 16) | 0x0040u); return; }
    u += 0x7fffu + ((u >> 16) & 1u);
    *p = (bf16_t)(u >> 16);
}
