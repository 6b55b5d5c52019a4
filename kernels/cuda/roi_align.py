"""RoIAlign on the GPU (``roi_align.cu``), forward and backward, with the
contracts of the NumPy references in ``minicnn/ops/roi_align.py``."""
from .loader import array_module, f64, i32, i64, launch


def _args(in_shape, pooled, spatial_scale, sampling_ratio, aligned):
    return (*(i32(v) for v in (*in_shape[1:], *pooled)), f64(spatial_scale), i32(sampling_ratio), i32(bool(aligned)))


def roi_align_forward(x, rois, pooled, spatial_scale, sampling_ratio, aligned):
    """x (N, C, H, W), rois (K, 5) -> (K, C, PH, PW)."""
    xp = array_module(x)
    x, rois = xp.ascontiguousarray(x), xp.ascontiguousarray(rois, dtype=x.dtype)
    y = xp.empty((rois.shape[0], x.shape[1]) + tuple(pooled), dtype=x.dtype)
    launch("roi_align.cu", "roi_align_forward", x.dtype, y.size, x, rois, y, i64(y.size),
           *_args(x.shape, pooled, spatial_scale, sampling_ratio, aligned))
    return y


def roi_align_backward(gy, rois, in_shape, spatial_scale, sampling_ratio, aligned):
    """gy (K, C, PH, PW) -> gx of ``in_shape`` (N, C, H, W)."""
    xp = array_module(gy)
    gy, rois = xp.ascontiguousarray(gy), xp.ascontiguousarray(rois, dtype=gy.dtype)
    gx = xp.zeros(tuple(in_shape), dtype=gy.dtype)
    launch("roi_align.cu", "roi_align_backward", gy.dtype, gy.size, gy, rois, gx, i64(gy.size),
           *_args(in_shape, gy.shape[2:], spatial_scale, sampling_ratio, aligned))
    return gx
