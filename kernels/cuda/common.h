// Shared by every kernel source in kernels/cuda.
//
// Each .cu file is compiled once per floating dtype, with scalar_t defined
// on the command line (-Dscalar_t=float or -Dscalar_t=double); the same
// source then serves float32 and float64 tensors. The kernels use only
// what the CPU emulation harness (tests/cuda/emulation) can run: the
// thread indices, no shared memory and no barriers, so every kernel's
// numbers can be checked against the NumPy reference on a machine without
// a GPU.
#ifndef MINICNN_CUDA_COMMON_H
#define MINICNN_CUDA_COMMON_H

#ifndef scalar_t
#error "compile with -Dscalar_t=float or -Dscalar_t=double"
#endif

// Flat indices run in 64 bits: an activation of a large batch can hold
// more than 2^31 elements.
typedef long long index_t;

// A grid-stride loop: thread t of the whole grid takes the elements t,
// t + (number of threads), ...; any grid size covers any n.
#define MC_KERNEL_LOOP(i, n)                                                  \
    for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (index_t)blockDim.x * gridDim.x)

// -infinity of scalar_t, from its bit pattern (no host headers on the GPU).
__device__ __forceinline__ float mc_neg_inf(float) { return __int_as_float(0xff800000); }
__device__ __forceinline__ double mc_neg_inf(double) {
    return __longlong_as_double((long long)0xfff0000000000000ULL);
}

// Of the outputs o in [0, out_size), the one whose window tap, starting at
// o * stride - pad + tap * dilation, lands on input position i; -1 if none.
// This is how the gather kernels (col2im, pooling backward) find, for one
// input pixel, the outputs that read it, without atomics.
__device__ __forceinline__ int mc_source_output(int i, int tap, int stride, int pad, int dilation,
                                                int out_size) {
    int t = i + pad - tap * dilation;
    if (t < 0 || t % stride != 0) return -1;
    t /= stride;
    return t < out_size ? t : -1;
}

#endif
