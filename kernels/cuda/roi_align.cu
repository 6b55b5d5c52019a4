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

// Calls visit(yl, yh, xl, xh, wyl, wyh, wxl, wxh) for every sample of bin
// (ph, pw) that lies on the map, in row-major sample order.
template <typename Visitor>
__device__ __forceinline__ void for_each_sample(const RoiGeometry& g, int ph, int pw, int H, int W,
                                                Visitor& visit) {
    for (int iy = 0; iy < g.gh; ++iy) {
        int yl, yh;
        scalar_t wyl, wyh;
        if (!sample_axis(sample_position(g.y0, ph, g.bh, iy, g.gh), H, &yl, &yh, &wyl, &wyh)) continue;
        for (int ix = 0; ix < g.gw; ++ix) {
            int xl, xh;
            scalar_t wxl, wxh;
            if (!sample_axis(sample_position(g.x0, pw, g.bw, ix, g.gw), W, &xl, &xh, &wxl, &wxh)) continue;
            visit(yl, yh, xl, xh, wyl, wyh, wxl, wxh);
        }
    }
}

// The forward's visitor: sums the bilinear reads of the plane.
struct GatherSamples {
    const scalar_t* plane;
    int W;
    scalar_t total;
    __device__ void operator()(int yl, int yh, int xl, int xh, scalar_t wyl, scalar_t wyh, scalar_t wxl,
                               scalar_t wxh) {
        total += wyl * wxl * plane[yl * W + xl] + wyl * wxh * plane[yl * W + xh] +
                 wyh * wxl * plane[yh * W + xl] + wyh * wxh * plane[yh * W + xh];
    }
};

// The backward's visitor: adds grad's share of each sample to its four pixels.
struct ScatterSamples {
    scalar_t* plane;
    int W;
    scalar_t grad, count;
    __device__ void operator()(int yl, int yh, int xl, int xh, scalar_t wyl, scalar_t wyh, scalar_t wxl,
                               scalar_t wxh) {
        atomicAdd(plane + yl * W + xl, grad * (wyl * wxl) / count);
        atomicAdd(plane + yl * W + xh, grad * (wyl * wxh) / count);
        atomicAdd(plane + yh * W + xl, grad * (wyh * wxl) / count);
        atomicAdd(plane + yh * W + xh, grad * (wyh * wxh) / count);
    }
};

// Output o of (K, C, PH, PW): its region's geometry, plane offset (n, c) and bin.
__device__ __forceinline__ RoiGeometry output_bin(index_t o, const scalar_t* __restrict__ rois, int C, int H,
                                                  int W, int PH, int PW, double spatial_scale,
                                                  int sampling_ratio, int aligned, index_t* plane, int* ph,
                                                  int* pw) {
    *pw = (int)(o % PW);
    *ph = (int)(o / PW % PH);
    int c = (int)(o / ((index_t)PW * PH) % C);
    index_t k = o / ((index_t)PW * PH * C);
    RoiGeometry g = roi_geometry(rois + k * 5, (scalar_t)spatial_scale, PH, PW, sampling_ratio, aligned);
    *plane = (g.n * C + c) * H * W;
    return g;
}

// The two kernels' shared parameters, and the set-up of output o's bin.
#define ROI_ALIGN_PARAMS                                                                                \
    index_t total, int C, int H, int W, int PH, int PW, double spatial_scale, int sampling_ratio, int aligned
#define ROI_ALIGN_OUTPUT_BIN(o)                                                                         \
    index_t plane;                                                                                      \
    int ph, pw;                                                                                         \
    RoiGeometry g = output_bin(o, rois, C, H, W, PH, PW, spatial_scale, sampling_ratio, aligned, &plane, &ph, &pw)

extern "C" __global__ void roi_align_forward(const scalar_t* __restrict__ x, const scalar_t* __restrict__ rois,
                                             scalar_t* __restrict__ y, ROI_ALIGN_PARAMS) {
    MC_KERNEL_LOOP(o, total) {
        ROI_ALIGN_OUTPUT_BIN(o);
        GatherSamples gather = {x + plane, W, (scalar_t)0};
        for_each_sample(g, ph, pw, H, W, gather);
        y[o] = gather.total / g.count;
    }
}

// gx must hold zeros: the kernel adds into it.
extern "C" __global__ void roi_align_backward(const scalar_t* __restrict__ gy, const scalar_t* __restrict__ rois,
                                              scalar_t* __restrict__ gx, ROI_ALIGN_PARAMS) {
    MC_KERNEL_LOOP(o, total) {
        ROI_ALIGN_OUTPUT_BIN(o);
        ScatterSamples scatter = {gx + plane, W, gy[o], g.count};
        for_each_sample(g, ph, pw, H, W, scatter);
    }
}
