"""CUDA kernels: the ``.cu`` sources of this folder and their CuPy wrappers.

Importing this package registers the wrappers as the ``"cuda"`` versions of
the registry's primitives, lazily (as ``"module:function"`` strings), so
neither CuPy nor a GPU is needed until an op runs on CuPy arrays. Each
wrapper has the signature and the result of the primitive's NumPy
reference; ``loader.py`` compiles and launches the kernels.
"""
from .. import registry

#: primitive -> the module of kernels/cuda that implements it
PRIMITIVES = {
    "im2col": "im2col",
    "col2im": "im2col",
    "depthwise_conv2d_forward": "conv",
    "depthwise_conv2d_grad_input": "conv",
    "depthwise_conv2d_grad_weight": "conv",
    "max_pool2d_forward": "pooling",
    "max_pool2d_backward": "pooling",
    "avg_pool2d_forward": "pooling",
    "avg_pool2d_backward": "pooling",
    "adaptive_avg_pool2d_forward": "pooling",
    "adaptive_avg_pool2d_backward": "pooling",
    "adaptive_max_pool2d_forward": "pooling",
    "adaptive_max_pool2d_backward": "pooling",
    "batch_norm_forward": "batchnorm",
    "batch_norm_backward": "batchnorm",
    "erf": "special",
    "nms": "nms",
    "roi_align_forward": "roi_align",
    "roi_align_backward": "roi_align",
}

for _primitive, _module in PRIMITIVES.items():
    registry.register(_primitive, "cuda", f"minicnn.kernels.cuda.{_module}:{_primitive}")
