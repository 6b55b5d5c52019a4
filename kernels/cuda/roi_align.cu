// RoIAlign on the GPU, forward and backward (minicnn/ops/roi_align.py has
// the sampling rule; the geometry here is the CPU kernels', in scalar_t).
//
// Notation: input (N, C, H, W), rois (K, 5) rows (n, x1, y1, x2, y2),
// output (K, C, PH, PW). The forward takes one thread per output and
// averages its bin's samples. The backward takes one thread per output
// gradient and adds its share to the four pixels of each sample with
// atomicAdd: regions overlap anywhere, so there is no gather to write
// instead (the order of the adds, hence the last bits, varies from run to
// run, as in torchvision's CUDA kernel).
#include "common.h"

struct RoiGeometry {
    index_t n;
    scalar_t y0, x0, bh, bw, count;
    int gh, gw;
};

__device__ __forceinline__ RoiGeometry roi_geometry(const scalar_t* __restrict__ roi, scalar_t scale, int PH,
                                                    int PW, int sampling_ratio, int aligned) {
    RoiGeometry g;
    scalar_t offset = aligned ? (scalar_t)0.5 : (scalar_t)0;
    g.n = (index_t)roi[0];
    g.x0 = roi[1] * scale - offset;
    g.y0 = roi[2] * scale - offset;
    scalar_t w = roi[3] * scale - offset - g.x0;
    scalar_t h = roi[4] * scale - offset - g.y0;
    if (!aligned) {
        w = max(w, (scalar_t)1);
        h = max(h, (scalar_t)1);
    }
    g.bh = h / (scalar_t)PH;
    g.bw = w / (scalar_t)PW;
    g.gh = sampling_ratio > 0 ? sampling_ratio : max((int)ceil((double)(h / (scalar_t)PH)), 0);
    g.gw = sampling_ratio > 0 ? sampling_ratio : max((int)ceil((double)(w / (scalar_t)PW)), 0);
    g.count = g.gh * g.gw > 0 ? (scalar_t)g.gh * (scalar_t)g.gw : (scalar_t)1;
    return g;
}

// One axis of a sample at c: its two pixels and their weights; false for a
// sample more than one pixel outside [0, length).
__device__ __forceinline__ bool sample_axis(scalar_t c, int length, int* low, int* high, scalar_t* w_low,
                                            scalar_t* w_high) {
    if (c < (scalar_t)-1 || c > (scalar_t)length) return false;
    if (c <= (scalar_t)0) c = (scalar_t)0;
    *low = (int)c;
    if (*low >= length - 1) {
        *low = *high = length - 1;
        c = (scalar_t)*low;
    } else {
        *high = *low + 1;
    }
    scalar_t frac = c - (scalar_t)*low;
    *w_low = (scalar_t)1 - frac;
    *w_high = frac;
    return true;
}

__device__ __forceinline__ scalar_t sample_position(scalar_t start, int p, scalar_t bin, int i, int grid) {
    return start + (scalar_t)p * bin + ((scalar_t)i + (scalar_t)0.5) * bin / (scalar_t)grid;
}

extern "C" __global__ void roi_align_forward(const scalar_t* __restrict__ x, const scalar_t* __restrict__ rois,
                                             scalar_t* __restrict__ y, index_t total, int C, int H, int W,
                                             int PH, int PW, double spatial_scale, int sampling_ratio,
                                             int aligned) {
    MC_KERNEL_LOOP(o, total) {
        int pw = (int)(o % PW);
        int ph = (int)(o / PW % PH);
        int c = (int)(o / ((index_t)PW * PH) % C);
        index_t k = o / ((index_t)PW * PH * C);
        RoiGeometry g = roi_geometry(rois + k * 5, (scalar_t)spatial_scale, PH, PW, sampling_ratio, aligned);
        const scalar_t* plane = x + (g.n * C + c) * H * W;
        scalar_t total_value = 0;
        for (int iy = 0; iy < g.gh; ++iy) {
            int yl, yh;
            scalar_t wyl, wyh;
            if (!sample_axis(sample_position(g.y0, ph, g.bh, iy, g.gh), H, &yl, &yh, &wyl, &wyh)) continue;
            for (int ix = 0; ix < g.gw; ++ix) {
                int xl, xh;
                scalar_t wxl, wxh;
                if (!sample_axis(sample_position(g.x0, pw, g.bw, ix, g.gw), W, &xl, &xh, &wxl, &wxh)) continue;
                total_value += wyl * wxl * plane[yl * W + xl] + wyl * wxh * plane[yl * W + xh] +
                               wyh * wxl * plane[yh * W + xl] + wyh * wxh * plane[yh * W + xh];
            }
        }
        y[o] = total_value / g.count;
    }
}

// gx must hold zeros: the kernel adds into it.
extern "C" __global__ void roi_align_backward(const scalar_t* __restrict__ gy, const scalar_t* __restrict__ rois,
                                              scalar_t* __restrict__ gx, index_t total, int C, int H, int W,
                                              int PH, int PW, double spatial_scale, int sampling_ratio,
                                              int aligned) {
    MC_KERNEL_LOOP(o, total) {
        int pw = (int)(o % PW);
        int ph = (int)(o / PW % PH);
        int c = (int)(o / ((index_t)PW * PH) % C);
        index_t k = o / ((index_t)PW * PH * C);
        RoiGeometry g = roi_geometry(rois + k * 5, (scalar_t)spatial_scale, PH, PW, sampling_ratio, aligned);
        scalar_t* plane = gx + (g.n * C + c) * H * W;
        scalar_t grad = gy[o];
        for (int iy = 0; iy < g.gh; ++iy) {
            int yl, yh;
            scalar_t wyl, wyh;
            if (!sample_axis(sample_position(g.y0, ph, g.bh, iy, g.gh), H, &yl, &yh, &wyl, &wyh)) continue;
            for (int ix = 0; ix < g.gw; ++ix) {
                int xl, xh;
                scalar_t wxl, wxh;
                if (!sample_axis(sample_position(g.x0, pw, g.bw, ix, g.gw), W, &xl, &xh, &wxl, &wxh)) continue;
                atomicAdd(plane + yl * W + xl, grad * (wyl * wxl) / g.count);
                atomicAdd(plane + yl * W + xh, grad * (wyl * wxh) / g.count);
                atomicAdd(plane + yh * W + xl, grad * (wyh * wxl) / g.count);
                atomicAdd(plane + yh * W + xh, grad * (wyh * wxh) / g.count);
            }
        }
    }
}
