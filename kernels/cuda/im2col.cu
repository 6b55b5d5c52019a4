// im2col and col2im on the GPU, for 1, 2 or 3 spatial dims.
//
// Notation as in minicnn/functional/im2col.py: N batch, C channels, D, H, W
// input size, KD, KH, KW kernel, OD, OH, OW output size, strides sd, sh, sw,
// dilations dd, dh, dw, front / top / left the zero padding before the
// first frame / row / column.
//
//     cols[n, c, kd, kh, kw, od, oh, ow]
//         = xpad[n, c, od*sd + kd*dd, oh*sh + kh*dh, ow*sw + kw*dw]
//
// The kernels are written for three spatial dims; a 2-D convolution is the
// case D = KD = OD = 1 (and a 1-D one also H = KH = OH = 1), which the
// wrapper (im2col.py) passes, so one source serves every rank.
//
// Both arrays are C-contiguous. im2col runs one thread per entry of cols
// (a copy, or a zero on the padding). col2im is its adjoint, written as a
// gather: one thread per input pixel sums every entry of cols that was
// copied from it, so no two threads write the same element and no atomics
// are needed.
#include "common.h"

extern "C" __global__ void im2col(const scalar_t* __restrict__ x, scalar_t* __restrict__ cols,
                                  index_t total, int D, int H, int W, int KD, int KH, int KW,
                                  int OD, int OH, int OW, int sd, int sh, int sw, int front,
                                  int top, int left, int dd, int dh, int dw) {
    MC_KERNEL_LOOP(i, total) {
        // i = (((((((n*C + c)*KD + kd)*KH + kh)*KW + kw)*OD + od)*OH + oh)*OW + ow
        index_t r = i;
        int ow = (int)(r % OW); r /= OW;
        int oh = (int)(r % OH); r /= OH;
        int od = (int)(r % OD); r /= OD;
        int kw = (int)(r % KW); r /= KW;
        int kh = (int)(r % KH); r /= KH;
        int kd = (int)(r % KD);
        index_t nc = r / KD;
        int d = od * sd - front + kd * dd;
        int h = oh * sh - top + kh * dh;
        int w = ow * sw - left + kw * dw;
        bool inside = d >= 0 && d < D && h >= 0 && h < H && w >= 0 && w < W;
        cols[i] = inside ? x[((nc * D + d) * H + h) * W + w] : (scalar_t)0;
    }
}

extern "C" __global__ void col2im(const scalar_t* __restrict__ cols, scalar_t* __restrict__ x,
                                  index_t total, int D, int H, int W, int KD, int KH, int KW,
                                  int OD, int OH, int OW, int sd, int sh, int sw, int front,
                                  int top, int left, int dd, int dh, int dw) {
    MC_KERNEL_LOOP(i, total) {
        // i = (((n*C + c)*D + d)*H + h)*W + w
        int w = (int)(i % W);
        int h = (int)(i / W % H);
        int d = (int)(i / ((index_t)W * H) % D);
        index_t nc = i / ((index_t)W * H * D);
        const scalar_t* plane = cols + nc * KD * KH * KW * OD * OH * OW;
        scalar_t sum = 0;
        for (int kd = 0; kd < KD; ++kd) {
            int od = mc_source_output(d, kd, sd, front, dd, OD);
            if (od < 0) continue;
            for (int kh = 0; kh < KH; ++kh) {
                int oh = mc_source_output(h, kh, sh, top, dh, OH);
                if (oh < 0) continue;
                for (int kw = 0; kw < KW; ++kw) {
                    int ow = mc_source_output(w, kw, sw, left, dw, OW);
                    if (ow < 0) continue;
                    sum += plane[((((kd * KH + kh) * KW + kw) * (index_t)OD + od) * OH + oh) * OW + ow];
                }
            }
        }
        x[i] = sum;
    }
}
