// Max, average and adaptive pooling on the GPU, forward and backward.
//
// Notation as in minicnn/functional/pooling.py: N batch, C channels, H, W
// input size, KH, KW kernel, sh, sw stride, ph, pw padding, dh, dw
// dilation, OH, OW output size. Every array is C-contiguous; "plane" is one
// (n, c) image, H*W values of the input or OH*OW of the output.
//
// Forward kernels take one thread per output and walk its window; window
// positions outside the input are skipped, which is what -inf padding
// (max) or zero padding (avg) amounts to. Backward kernels are gathers:
// one thread per input pixel sums the gradients of the outputs whose
// windows read it, so overlapping windows need no atomics. The results are
// those of the NumPy references: the offset kh*KW + kw (max pooling) or
// the flat index h*W + w (adaptive max pooling) of the first maximum, a NaN
// always winning; sums up to rounding.
#include "common.h"

// -- max pooling ---------------------------------------------------------
// y and arg (the kernel offset of each maximum, as Offset) for one output.
template <typename Offset>
__device__ __forceinline__ void max_pool2d_forward_body(
        const scalar_t* __restrict__ x, scalar_t* __restrict__ y, Offset* __restrict__ arg,
        index_t total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph,
        int pw, int dh, int dw) {
    MC_KERNEL_LOOP(i, total) {
        int ow = (int)(i % OW);
        int oh = (int)(i / OW % OH);
        const scalar_t* plane = x + i / ((index_t)OW * OH) * H * W;
        // An all-padding window holds -inf at offset 0, as in the reference.
        scalar_t best = mc_neg_inf((scalar_t)0);
        int k_best = 0;
        for (int kh = 0; kh < KH; ++kh) {
            int h = oh * sh - ph + kh * dh;
            if (h < 0 || h >= H) continue;
            for (int kw = 0; kw < KW; ++kw) {
                int w = ow * sw - pw + kw * dw;
                if (w < 0 || w >= W) continue;
                scalar_t v = plane[h * W + w];
                if (v > best || v != v) {  // strict >: the first max wins; a NaN always wins
                    best = v;
                    k_best = kh * KW + kw;
                }
            }
        }
        y[i] = best;
        arg[i] = (Offset)k_best;
    }
}

// gx at one input pixel: the gradients of the outputs whose maximum it held.
template <typename Offset>
__device__ __forceinline__ void max_pool2d_backward_body(
        const scalar_t* __restrict__ gy, const Offset* __restrict__ arg, scalar_t* __restrict__ gx,
        index_t total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph,
        int pw, int dh, int dw) {
    MC_KERNEL_LOOP(i, total) {
        int w = (int)(i % W);
        int h = (int)(i / W % H);
        index_t plane = i / ((index_t)W * H) * OH * OW;
        scalar_t sum = 0;
        for (int kh = 0; kh < KH; ++kh) {
            int oh = mc_source_output(h, kh, sh, ph, dh, OH);
            if (oh < 0) continue;
            for (int kw = 0; kw < KW; ++kw) {
                int ow = mc_source_output(w, kw, sw, pw, dw, OW);
                if (ow < 0) continue;
                index_t o = plane + oh * OW + ow;
                if ((int)arg[o] == kh * KW + kw) sum += gy[o];
            }
        }
        gx[i] = sum;
    }
}

#define MAX_POOL_PARAMS                                                                        \
    index_t total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, \
        int dh, int dw
#define MAX_POOL_ARGS total, H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw

// The offsets are uint8 for windows of up to 256 positions, int32 beyond.
extern "C" __global__ void max_pool2d_forward_u8(const scalar_t* __restrict__ x,
                                                 scalar_t* __restrict__ y,
                                                 unsigned char* __restrict__ arg, MAX_POOL_PARAMS) {
    max_pool2d_forward_body(x, y, arg, MAX_POOL_ARGS);
}

extern "C" __global__ void max_pool2d_forward_i32(const scalar_t* __restrict__ x,
                                                  scalar_t* __restrict__ y, int* __restrict__ arg,
                                                  MAX_POOL_PARAMS) {
    max_pool2d_forward_body(x, y, arg, MAX_POOL_ARGS);
}

extern "C" __global__ void max_pool2d_backward_u8(const scalar_t* __restrict__ gy,
                                                  const unsigned char* __restrict__ arg,
                                                  scalar_t* __restrict__ gx, MAX_POOL_PARAMS) {
    max_pool2d_backward_body(gy, arg, gx, MAX_POOL_ARGS);
}

extern "C" __global__ void max_pool2d_backward_i32(const scalar_t* __restrict__ gy,
                                                   const int* __restrict__ arg,
                                                   scalar_t* __restrict__ gx, MAX_POOL_PARAMS) {
    max_pool2d_backward_body(gy, arg, gx, MAX_POOL_ARGS);
}

// -- average pooling (no dilation) -----------------------------------------
// y = the sum of each window's input positions / divisor[oh, ow].
extern "C" __global__ void avg_pool2d_forward(const scalar_t* __restrict__ x,
                                              const scalar_t* __restrict__ divisor,
                                              scalar_t* __restrict__ y, index_t total, int H, int W,
                                              int OH, int OW, int KH, int KW, int sh, int sw,
                                              int ph, int pw) {
    MC_KERNEL_LOOP(i, total) {
        int ow = (int)(i % OW);
        int oh = (int)(i / OW % OH);
        const scalar_t* plane = x + i / ((index_t)OW * OH) * H * W;
        int h_lo = max(oh * sh - ph, 0), h_hi = min(oh * sh - ph + KH, H);
        int w_lo = max(ow * sw - pw, 0), w_hi = min(ow * sw - pw + KW, W);
        scalar_t sum = 0;
        for (int h = h_lo; h < h_hi; ++h)
            for (int w = w_lo; w < w_hi; ++w) sum += plane[h * W + w];
        y[i] = sum / divisor[oh * OW + ow];
    }
}

// gx at one input pixel: gy / divisor summed over the windows that cover it.
extern "C" __global__ void avg_pool2d_backward(const scalar_t* __restrict__ gy,
                                               const scalar_t* __restrict__ divisor,
                                               scalar_t* __restrict__ gx, index_t total, int H,
                                               int W, int OH, int OW, int KH, int KW, int sh,
                                               int sw, int ph, int pw) {
    MC_KERNEL_LOOP(i, total) {
        int w = (int)(i % W);
        int h = (int)(i / W % H);
        const scalar_t* plane = gy + i / ((index_t)W * H) * OH * OW;
        scalar_t sum = 0;
        for (int kh = 0; kh < KH; ++kh) {
            int oh = mc_source_output(h, kh, sh, ph, 1, OH);
            if (oh < 0) continue;
            for (int kw = 0; kw < KW; ++kw) {
                int ow = mc_source_output(w, kw, sw, pw, 1, OW);
                if (ow < 0) continue;
                sum += plane[oh * OW + ow] / divisor[oh * OW + ow];
            }
        }
        gx[i] = sum;
    }
}

// -- adaptive pooling ------------------------------------------------------
// torch's bin j of an axis of `size` inputs and `out` outputs is
// [floor(j*size/out), ceil((j+1)*size/out)). Input i lies in the bins
// j in [floor(i*out/size), ceil((i+1)*out/size)): the same formulas with the
// roles of size and out swapped. Neighbouring bins may overlap.
__device__ __forceinline__ int mc_bin_start(int j, int size, int out) { return j * size / out; }
__device__ __forceinline__ int mc_bin_end(int j, int size, int out) {
    return ((j + 1) * size + out - 1) / out;
}

extern "C" __global__ void adaptive_avg_pool2d_forward(const scalar_t* __restrict__ x,
                                                       scalar_t* __restrict__ y, index_t total,
                                                       int H, int W, int OH, int OW) {
    MC_KERNEL_LOOP(i, total) {
        int ow = (int)(i % OW);
        int oh = (int)(i / OW % OH);
        const scalar_t* plane = x + i / ((index_t)OW * OH) * H * W;
        int h_lo = mc_bin_start(oh, H, OH), h_hi = mc_bin_end(oh, H, OH);
        int w_lo = mc_bin_start(ow, W, OW), w_hi = mc_bin_end(ow, W, OW);
        scalar_t sum = 0;
        for (int h = h_lo; h < h_hi; ++h)
            for (int w = w_lo; w < w_hi; ++w) sum += plane[h * W + w];
        y[i] = sum / (scalar_t)((h_hi - h_lo) * (w_hi - w_lo));
    }
}

extern "C" __global__ void adaptive_avg_pool2d_backward(const scalar_t* __restrict__ gy,
                                                        scalar_t* __restrict__ gx, index_t total,
                                                        int H, int W, int OH, int OW) {
    MC_KERNEL_LOOP(i, total) {
        int w = (int)(i % W);
        int h = (int)(i / W % H);
        const scalar_t* plane = gy + i / ((index_t)W * H) * OH * OW;
        scalar_t sum = 0;
        for (int oh = mc_bin_start(h, OH, H); oh < mc_bin_end(h, OH, H); ++oh) {
            int rows = mc_bin_end(oh, H, OH) - mc_bin_start(oh, H, OH);
            for (int ow = mc_bin_start(w, OW, W); ow < mc_bin_end(w, OW, W); ++ow) {
                int cols = mc_bin_end(ow, W, OW) - mc_bin_start(ow, W, OW);
                sum += plane[oh * OW + ow] / (scalar_t)(rows * cols);
            }
        }
        gx[i] = sum;
    }
}

// y and idx (the flat index h*W + w of each bin's maximum) for one output.
extern "C" __global__ void adaptive_max_pool2d_forward(const scalar_t* __restrict__ x,
                                                       scalar_t* __restrict__ y,
                                                       long long* __restrict__ idx,
                                                       index_t total, int H, int W, int OH,
                                                       int OW) {
    MC_KERNEL_LOOP(i, total) {
        int ow = (int)(i % OW);
        int oh = (int)(i / OW % OH);
        const scalar_t* plane = x + i / ((index_t)OW * OH) * H * W;
        int h_lo = mc_bin_start(oh, H, OH), h_hi = mc_bin_end(oh, H, OH);
        int w_lo = mc_bin_start(ow, W, OW), w_hi = mc_bin_end(ow, W, OW);
        scalar_t best = plane[h_lo * W + w_lo];  // a bin is never empty
        int i_best = h_lo * W + w_lo;
        for (int h = h_lo; h < h_hi; ++h)
            for (int w = w_lo; w < w_hi; ++w) {
                scalar_t v = plane[h * W + w];
                if (v > best || v != v) {  // as in max pooling
                    best = v;
                    i_best = h * W + w;
                }
            }
        y[i] = best;
        idx[i] = i_best;
    }
}

// gx at one input pixel: the gradients of the bins whose maximum it held.
extern "C" __global__ void adaptive_max_pool2d_backward(const scalar_t* __restrict__ gy,
                                                        const long long* __restrict__ idx,
                                                        scalar_t* __restrict__ gx, index_t total,
                                                        int H, int W, int OH, int OW) {
    MC_KERNEL_LOOP(i, total) {
        int w = (int)(i % W);
        int h = (int)(i / W % H);
        index_t plane = i / ((index_t)W * H) * OH * OW;
        scalar_t sum = 0;
        for (int oh = mc_bin_start(h, OH, H); oh < mc_bin_end(h, OH, H); ++oh)
            for (int ow = mc_bin_start(w, OW, W); ow < mc_bin_end(w, OW, W); ++ow) {
                index_t o = plane + oh * OW + ow;
                if (idx[o] == h * W + w) sum += gy[o];
            }
        gx[i] = sum;
    }
}
