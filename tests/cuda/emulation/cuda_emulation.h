// The CUDA thread model on the CPU, for tests: compile a kernel source from
// kernels/cuda as C++ with this header first, and each kernel can be run on
// NumPy buffers through ctypes.
//
// What it stands in for:
//   * __global__, __device__, __forceinline__ and __restrict__ become plain
//     C++ (a kernel is an ordinary function);
//   * gridDim, blockDim, blockIdx and threadIdx are globals, set by the
//     launcher before each call;
//   * a launch runs the kernel once per thread, sequentially: blocks in
//     order, threads in order within a block; atomics are plain adds, since
//     nothing runs concurrently;
//   * the few device intrinsics the kernels use, from the C++ library.
// Not modelled: shared memory and __syncthreads() (a barrier needs the
// threads of a block to run concurrently), warps. The kernels use neither.
//
// EMU_EXPORT(kernel) defines extern "C" emu_launch_<kernel>(gx, gy, gz, bx,
// by, bz, args), where args is what cuLaunchKernel takes: an array of
// pointers, one to each argument's value, in the kernel's parameter order.
#ifndef MINICNN_CUDA_EMULATION_H
#define MINICNN_CUDA_EMULATION_H

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

static dim3 gridDim, blockDim, blockIdx, threadIdx;

using std::max;
using std::min;
using std::sqrt;

inline float __int_as_float(int bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

inline double __longlong_as_double(long long bits) {
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
}

template <typename T>
inline T atomicAdd(T* address, T value) {
    T old = *address;
    *address = old + value;
    return old;
}

namespace emu {

template <typename... Args, std::size_t... I>
void call(void (*kernel)(Args...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<typename std::remove_reference<Args>::type*>(args[I])...);
}

template <typename... Args>
void launch(void (*kernel)(Args...), dim3 grid, dim3 block, void** args) {
    gridDim = grid;
    blockDim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx)
                for (unsigned tz = 0; tz < block.z; ++tz)
                    for (unsigned ty = 0; ty < block.y; ++ty)
                        for (unsigned tx = 0; tx < block.x; ++tx) {
                            blockIdx = dim3(bx, by, bz);
                            threadIdx = dim3(tx, ty, tz);
                            call(kernel, args, std::index_sequence_for<Args...>{});
                        }
}

}  // namespace emu

#define EMU_EXPORT(kernel)                                                                 \
    extern "C" void emu_launch_##kernel(unsigned gx, unsigned gy, unsigned gz, unsigned bx, \
                                        unsigned by, unsigned bz, void** args) {            \
        emu::launch(kernel, dim3(gx, gy, gz), dim3(bx, by, bz), args);                      \
    }

#endif
