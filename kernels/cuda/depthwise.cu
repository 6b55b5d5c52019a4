// Depthwise convolution on the GPU, computed directly (no im2col).
//
// Notation as in kernels/cpu/depthwise.py: N batch, C input channels, M
// outputs per input channel, O = C * M output channels, KH, KW kernel,
// H, W input size, OH, OW output size, strides sh, sw, dilations dh, dw,
// top / left the zero padding before the first row / column.
//
//     x: (N, C, H, W)   w: (O, KH, KW)   b: (O,)   y, gy: (N, O, OH, OW)
//     y[n, o, oh, ow] = b[o] + sum_{kh, kw} w[o, kh, kw] xpad[n, o / M, oh*sh + kh*dh, ow*sw + kw*dw]
//
// Forward: one thread per output. Input gradient: a gather, one thread per
// input pixel over the M outputs of its channel and the taps that read it.
// Weight gradient: each of the O*KH*KW weights sums N*OH*OW products, too
// many for one thread, so it is split like batch norm's statistics: P
// threads per weight each sum every P-th product into a (O*KH*KW, P) array
// of partial sums, which the caller adds up along P.
#include "common.h"

extern "C" __global__ void depthwise_forward(const scalar_t* __restrict__ x,
                                             const scalar_t* __restrict__ w,
                                             const scalar_t* __restrict__ b,
                                             scalar_t* __restrict__ y, index_t total, int C, int H,
                                             int W, int O, int KH, int KW, int OH, int OW, int sh,
                                             int sw, int top, int left, int dh, int dw) {
    MC_KERNEL_LOOP(i, total) {
        // i = ((n*O + o)*OH + oh)*OW + ow
        int ow = (int)(i % OW);
        int oh = (int)(i / OW % OH);
        int o = (int)(i / ((index_t)OW * OH) % O);
        index_t n = i / ((index_t)OW * OH * O);
        const scalar_t* image = x + (n * C + o / (O / C)) * H * W;
        const scalar_t* taps = w + (index_t)o * KH * KW;
        scalar_t sum = b[o];
        for (int kh = 0; kh < KH; ++kh) {
            int h = oh * sh - top + kh * dh;
            if (h < 0 || h >= H) continue;
            for (int kw = 0; kw < KW; ++kw) {
                int ww = ow * sw - left + kw * dw;
                if (ww < 0 || ww >= W) continue;
                sum += taps[kh * KW + kw] * image[h * W + ww];
            }
        }
        y[i] = sum;
    }
}

extern "C" __global__ void depthwise_grad_input(const scalar_t* __restrict__ gy,
                                                const scalar_t* __restrict__ w,
                                                scalar_t* __restrict__ gx, index_t total, int C,
                                                int H, int W, int O, int KH, int KW, int OH,
                                                int OW, int sh, int sw, int top, int left, int dh,
                                                int dw) {
    MC_KERNEL_LOOP(i, total) {
        // i = ((n*C + c)*H + h)*W + ww
        int ww = (int)(i % W);
        int h = (int)(i / W % H);
        int c = (int)(i / ((index_t)W * H) % C);
        index_t n = i / ((index_t)W * H * C);
        int M = O / C;
        scalar_t sum = 0;
        for (int o = c * M; o < (c + 1) * M; ++o) {
            const scalar_t* plane = gy + (n * O + o) * OH * OW;
            const scalar_t* taps = w + (index_t)o * KH * KW;
            for (int kh = 0; kh < KH; ++kh) {
                int oh = mc_source_output(h, kh, sh, top, dh, OH);
                if (oh < 0) continue;
                for (int kw = 0; kw < KW; ++kw) {
                    int ow = mc_source_output(ww, kw, sw, left, dw, OW);
                    if (ow < 0) continue;
                    sum += taps[kh * KW + kw] * plane[oh * OW + ow];
                }
            }
        }
        gx[i] = sum;
    }
}

// part[(o*KH + kh)*KW + kw, p] = the sum over every P-th (n, oh, ow), from p
// on, of gy[n, o, oh, ow] times the input pixel tap (kh, kw) saw there.
extern "C" __global__ void depthwise_grad_weight_partial(const scalar_t* __restrict__ x,
                                                         const scalar_t* __restrict__ gy,
                                                         scalar_t* __restrict__ part, int P, int N,
                                                         int C, int H, int W, int O, int KH,
                                                         int KW, int OH, int OW, int sh, int sw,
                                                         int top, int left, int dh, int dw) {
    MC_KERNEL_LOOP(t, (index_t)O * KH * KW * P) {
        int p = (int)(t % P);
        int k = (int)(t / P);  // (o*KH + kh)*KW + kw
        int kw = k % KW, kh = k / KW % KH, o = k / (KW * KH);
        int c = o / (O / C);
        index_t count = (index_t)N * OH * OW;
        scalar_t sum = 0;
        for (index_t j = p; j < count; j += P) {
            int ow = (int)(j % OW);
            int oh = (int)(j / OW % OH);
            index_t n = j / ((index_t)OW * OH);
            int h = oh * sh - top + kh * dh;
            int ww = ow * sw - left + kw * dw;
            if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
            sum += gy[((n * O + o) * OH + oh) * OW + ow] * x[((n * C + c) * H + h) * W + ww];
        }
        part[t] = sum;
    }
}
