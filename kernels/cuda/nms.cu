// Non-maximum suppression on the GPU (minicnn/ops/nms.py has the rules).
//
// The boxes come sorted by decreasing score. nms_mask computes, for every
// box i, which later boxes j it would suppress (IoU > threshold), 64 to a
// bit word: one thread per (i, word), so the n^2/2 IoUs run in parallel.
// nms_scan then walks the boxes in order on one thread, as the greedy
// rule needs: box i is kept unless an earlier kept box's bits hold it, and
// a kept box adds its bits to the removed set. The IoU is computed as in
// the CPU kernels, in scalar_t, the product w * h rounded on its own (not
// fused into the subtraction that follows), so a borderline IoU is
// decided the same way.
#include "common.h"

#define MC_NMS_WORD 64

#ifdef __CUDACC__
__device__ __forceinline__ float mc_mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mc_mul_rn(double a, double b) { return __dmul_rn(a, b); }
#else
__device__ __forceinline__ scalar_t mc_mul_rn(scalar_t a, scalar_t b) { return a * b; }
#endif

// Whether sorted box i suppresses sorted box j: IoU > threshold.
__device__ __forceinline__ bool nms_suppresses(const scalar_t* __restrict__ boxes,
                                               const scalar_t* __restrict__ areas, index_t i, index_t j,
                                               double threshold) {
    const scalar_t* a = boxes + i * 4;
    const scalar_t* b = boxes + j * 4;
    scalar_t w = min(a[2], b[2]) - max(a[0], b[0]);
    scalar_t h = min(a[3], b[3]) - max(a[1], b[1]);
    if (w < (scalar_t)0) w = (scalar_t)0;
    if (h < (scalar_t)0) h = (scalar_t)0;
    scalar_t inter = mc_mul_rn(w, h);
    scalar_t iou = inter / (areas[i] + areas[j] - inter);
    return (double)iou > threshold;
}

// mask[i * words + word]: bit t set when box i suppresses box word*64 + t (> i).
extern "C" __global__ void nms_mask(const scalar_t* __restrict__ boxes, const scalar_t* __restrict__ areas,
                                    long long* __restrict__ mask, index_t n, int words, double threshold) {
    MC_KERNEL_LOOP(t, n * words) {
        index_t i = t / words;
        index_t first = (t % words) * MC_NMS_WORD;
        unsigned long long bits = 0;
        for (int b = 0; b < MC_NMS_WORD && first + b < n; ++b) {
            index_t j = first + b;
            if (j > i && nms_suppresses(boxes, areas, i, j, threshold)) bits |= 1ULL << b;
        }
        mask[t] = (long long)bits;
    }
}

// The greedy pass, on one thread: kept[0 .. count) the sorted positions
// of the kept boxes, count in count[0]; removed holds ``words`` zeros.
extern "C" __global__ void nms_scan(const long long* __restrict__ mask, long long* __restrict__ removed,
                                    long long* __restrict__ kept, long long* __restrict__ count, index_t n,
                                    int words) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    index_t c = 0;
    for (index_t i = 0; i < n; ++i) {
        if (((unsigned long long)removed[i / MC_NMS_WORD] >> (i % MC_NMS_WORD)) & 1ULL) continue;
        kept[c++] = i;
        for (int w = (int)(i / MC_NMS_WORD); w < words; ++w) removed[w] |= mask[i * words + w];
    }
    count[0] = c;
}
