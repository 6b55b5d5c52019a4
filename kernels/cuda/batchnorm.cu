// Batch norm on the GPU: forward and backward.
//
// Notation as in minicnn/functional/normalization.py: x (N, C, *) viewed
// as (N, C, L), L the product of the trailing dims; n = N * L values per
// channel; mean and var (biased) per channel; sigma = sqrt(var + eps);
// w, b the per-channel weight and bias (ones and zeros when absent).
//
// Per-channel sums in two stages, without shared memory or atomics
// ----------------------------------------------------------------
// Stage 1 runs C * P threads: thread (c, p) sums the elements p, p + P,
// p + 2P, ... of channel c (neighbouring threads read neighbouring
// addresses) into its own slot of a (C, P) array of partial sums. Stage 2
// runs one thread per channel, which adds its P partials in a fixed order,
// so the result does not depend on scheduling. Partial sums are double,
// for float32 data too.
//
// Forward (training) sums d = x - K and d^2 with K the channel's first
// value, then mean = K + sum(d) / n and var = sum(d^2) / n - (sum(d) / n)^2:
// shifting keeps the subtraction from cancelling when |mean| is large
// against sigma. The output pass is elementwise: y = x a + o with a = w /
// sigma and o = b - mean a, two per-channel constants.
//
// Backward sums gy and gy (x - mean); then gb = sum(gy),
// gw = sum(gy (x - mean)) / sigma and, in training,
//     gx = (w / sigma) (gy - gb / n) - (x - mean) k,   k = (w / sigma) gw / (n sigma),
// in eval (mean and sigma constants) gx = (w / sigma) gy.
#include "common.h"

// Element j of channel c's n = N * L values, in x (N, C, L).
__device__ __forceinline__ index_t mc_channel_element(index_t j, int c, int C, index_t L) {
    return (j / L * C + c) * L + j % L;
}

// part1[c, p] = sum of (x - x[0, c, 0]), part2[c, p] = sum of its squares.
extern "C" __global__ void batch_norm_partial_stats(const scalar_t* __restrict__ x,
                                                    double* __restrict__ part1,
                                                    double* __restrict__ part2, int C, index_t L,
                                                    index_t n, int P) {
    MC_KERNEL_LOOP(t, (index_t)C * P) {
        int c = (int)(t / P), p = (int)(t % P);
        double shift = (double)x[(index_t)c * L];
        double s1 = 0, s2 = 0;
        for (index_t j = p; j < n; j += P) {
            double d = (double)x[mc_channel_element(j, c, C, L)] - shift;
            s1 += d;
            s2 += d * d;
        }
        part1[t] = s1;
        part2[t] = s2;
    }
}

// Per channel: mean, var and the affine constants a = w / sigma, o = b - mean a.
extern "C" __global__ void batch_norm_finish_stats(const scalar_t* __restrict__ x,
                                                   const double* __restrict__ part1,
                                                   const double* __restrict__ part2,
                                                   const scalar_t* __restrict__ weight,
                                                   const scalar_t* __restrict__ bias,
                                                   scalar_t* __restrict__ mean,
                                                   scalar_t* __restrict__ var,
                                                   scalar_t* __restrict__ a, scalar_t* __restrict__ o,
                                                   int C, index_t L, index_t n, int P, double eps) {
    MC_KERNEL_LOOP(c, C) {
        double s1 = 0, s2 = 0;
        for (int p = 0; p < P; ++p) {
            s1 += part1[c * P + p];
            s2 += part2[c * P + p];
        }
        double m = s1 / (double)n;
        double v = max(s2 / (double)n - m * m, 0.0);
        double mu = (double)x[c * L] + m;
        double scale = (double)weight[c] / sqrt(v + eps);
        mean[c] = (scalar_t)mu;
        var[c] = (scalar_t)v;
        a[c] = (scalar_t)scale;
        o[c] = (scalar_t)((double)bias[c] - mu * scale);
    }
}

// y = x a[c] + o[c], elementwise over x (N, C, L).
extern "C" __global__ void batch_norm_affine(const scalar_t* __restrict__ x,
                                             const scalar_t* __restrict__ a,
                                             const scalar_t* __restrict__ o,
                                             scalar_t* __restrict__ y, index_t total, int C,
                                             index_t L) {
    MC_KERNEL_LOOP(i, total) {
        int c = (int)(i / L % C);
        y[i] = x[i] * a[c] + o[c];
    }
}

// part1[c, p] = sum of gy, part2[c, p] = sum of gy (x - mean).
extern "C" __global__ void batch_norm_partial_grads(const scalar_t* __restrict__ gy,
                                                    const scalar_t* __restrict__ x,
                                                    const scalar_t* __restrict__ mean,
                                                    double* __restrict__ part1,
                                                    double* __restrict__ part2, int C, index_t L,
                                                    index_t n, int P) {
    MC_KERNEL_LOOP(t, (index_t)C * P) {
        int c = (int)(t / P), p = (int)(t % P);
        double mu = (double)mean[c];
        double s1 = 0, s2 = 0;
        for (index_t j = p; j < n; j += P) {
            index_t e = mc_channel_element(j, c, C, L);
            double g = (double)gy[e];
            s1 += g;
            s2 += g * ((double)x[e] - mu);
        }
        part1[t] = s1;
        part2[t] = s2;
    }
}

// Per channel: gb, gw and the constants of gx = scale (gy - k_mean) - (x - mean) k_x.
extern "C" __global__ void batch_norm_finish_grads(const double* __restrict__ part1,
                                                   const double* __restrict__ part2,
                                                   const scalar_t* __restrict__ inv_std,
                                                   const scalar_t* __restrict__ weight,
                                                   scalar_t* __restrict__ gw,
                                                   scalar_t* __restrict__ gb,
                                                   scalar_t* __restrict__ scale,
                                                   scalar_t* __restrict__ k_mean,
                                                   scalar_t* __restrict__ k_x, int C, index_t n,
                                                   int P, int training) {
    MC_KERNEL_LOOP(c, C) {
        double sg = 0, sgd = 0;
        for (int p = 0; p < P; ++p) {
            sg += part1[c * P + p];
            sgd += part2[c * P + p];
        }
        double inv = (double)inv_std[c];
        double s = (double)weight[c] * inv;
        gb[c] = (scalar_t)sg;
        gw[c] = (scalar_t)(sgd * inv);
        scale[c] = (scalar_t)s;
        k_mean[c] = (scalar_t)(training ? sg / (double)n : 0.0);
        k_x[c] = (scalar_t)(training ? s * sgd * inv * inv / (double)n : 0.0);
    }
}

// gx = scale[c] (gy - k_mean[c]) - (x - mean[c]) k_x[c], elementwise.
extern "C" __global__ void batch_norm_grad_input(const scalar_t* __restrict__ gy,
                                                 const scalar_t* __restrict__ x,
                                                 const scalar_t* __restrict__ mean,
                                                 const scalar_t* __restrict__ scale,
                                                 const scalar_t* __restrict__ k_mean,
                                                 const scalar_t* __restrict__ k_x,
                                                 scalar_t* __restrict__ gx, index_t total, int C,
                                                 index_t L) {
    MC_KERNEL_LOOP(i, total) {
        int c = (int)(i / L % C);
        gx[i] = scale[c] * (gy[i] - k_mean[c]) - (x[i] - mean[c]) * k_x[c];
    }
}
