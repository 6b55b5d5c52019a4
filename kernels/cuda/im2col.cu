// im2col and col2im on the GPU.
//
// Notation as in minicnn/functional/im2col.py: N batch, C channels, H, W
// input size, KH, KW kernel, OH, OW output size, strides sh, sw, dilations
// dh, dw, top / left the zero padding before the first row / column.
//
//     cols[n, c, kh, kw, oh, ow] = xpad[n, c, oh*sh + kh*dh, ow*sw + kw*dw]
//
// Both arrays are C-contiguous. im2col runs one thread per entry of cols
// (a copy, or a zero on the padding). col2im is its adjoint, written as a
// gather: one thread per input pixel sums every entry of cols that was
// copied from it, so no two threads write the same element and no atomics
// are needed.
#include "common.h"

extern "C" __global__ void im2col(const scalar_t* __restrict__ x, scalar_t* __restrict__ cols,
                                  index_t total, int H, int W, int KH, int KW, int OH,
                                  int OW, int sh, int sw, int top, int left, int dh, int dw) {
    MC_KERNEL_LOOP(i, total) {
        // i = ((((n*C + c)*KH + kh)*KW + kw)*OH + oh)*OW + ow
        int ow = (int)(i % OW);
        int oh = (int)(i / OW % OH);
        int kw = (int)(i / ((index_t)OW * OH) % KW);
        int kh = (int)(i / ((index_t)OW * OH * KW) % KH);
        index_t nc = i / ((index_t)OW * OH * KW * KH);
        int h = oh * sh - top + kh * dh;
        int w = ow * sw - left + kw * dw;
        cols[i] = (h >= 0 && h < H && w >= 0 && w < W) ? x[(nc * H + h) * W + w] : (scalar_t)0;
    }
}

extern "C" __global__ void col2im(const scalar_t* __restrict__ cols, scalar_t* __restrict__ x,
                                  index_t total, int H, int W, int KH, int KW, int OH,
                                  int OW, int sh, int sw, int top, int left, int dh, int dw) {
    MC_KERNEL_LOOP(i, total) {
        // i = ((n*C + c)*H + h)*W + w
        int w = (int)(i % W);
        int h = (int)(i / W % H);
        index_t nc = i / ((index_t)W * H);
        const scalar_t* plane = cols + nc * KH * KW * OH * OW;
        scalar_t sum = 0;
        for (int kh = 0; kh < KH; ++kh) {
            int oh = mc_source_output(h, kh, sh, top, dh, OH);
            if (oh < 0) continue;
            for (int kw = 0; kw < KW; ++kw) {
                int ow = mc_source_output(w, kw, sw, left, dw, OW);
                if (ow < 0) continue;
                sum += plane[((kh * KW + kw) * (index_t)OH + oh) * OW + ow];
            }
        }
        x[i] = sum;
    }
}
