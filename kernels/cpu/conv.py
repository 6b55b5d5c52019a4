"""conv2d's three primitives on the CPU: im2col + GEMM, tiled to stay in cache.

Notation as in ``minicnn/functional/conv.py``: N batch, C input channels,
O output channels, G groups, Cg = C / G, Og = O / G, Kg = Cg * KH * KW,
L = OH * OW output pixels per image.

    conv2d_forward(x, w, b, ...)     y  (N, O, OH, OW)  = w * x + b
    conv2d_grad_input(gy, w, ...)    gx (N, C, H, W)    (= conv_transpose2d)
    conv2d_grad_weight(x, gy, ...)   gw (O, Cg, KH, KW)

They compute what the NumPy references in ``conv.py`` compute, choosing
per call the cheapest of three ways:

depthwise (Cg == 1, G == C)
    a direct Numba kernel (``depthwise.py``): no column matrix at all.
dense (one output pixel per image, no padding, one group)
    the kernel's one window of each image is a row of the column matrix,
    so the convolution is a fully connected layer: one GEMM each way
    (LeNet-5's C5, 5x5 on 5x5: 0.47 ms through tiles, 0.05 this way).
pointwise (1x1 kernel, no padding)
    x itself, or its strided subsample, is the column matrix: GEMMs only,
    the images shared out among the threads.
winograd (3x3, stride 1, no dilation, one group, enough output tiles)
    Winograd's F(m x m, 3x3) (``winograd.py``): 2.25x (m = 2) or 4x
    (m = 4) fewer multiplications than im2col + GEMM, for the transforms'
    cost; that pays once there are ``WINOGRAD_MIN_TILES`` 2x2 output tiles
    or more to spread the filter transform over (below, e.g. a 2x2 output
    of 512 channels, im2col wins). m = 4 on outputs of at least
    ``WINOGRAD_4X4_MIN_SIZE`` rows and columns.
general
    the output pixels are cut into *tiles* (a band of rows of one image,
    or several whole images when an image is small), so that each tile's
    column matrix (Kg, T) is about ``TILE_BYTES``, few enough MB to still
    sit in cache when BLAS reads it. Per tile: im2col_tile fills the
    buffer (Numba, serial: BLAS owns the threads, see im2col.py), then one
    GEMM per group writes straight into the rows of y (``matmul(..., out=)``, no transposing
    copy), or for grad_input the GEMM fills the buffer and col2im_tile
    gathers it into gx. The full (Kg, N*L) matrix, KH*KW times the size
    of x, is never built: writing it to memory and reading it back costs
    more than the GEMM on small layers.
"""
import numpy

from .depthwise import depthwise_forward, depthwise_grad_input, depthwise_grad_weight
from .im2col import col2im_tile, im2col_tile
from .threads import matmul_into, run_in_parallel, split, sum_in_place, thread_count
from .winograd import tile_grid, winograd_conv2d, winograd_conv2d_grad_weight

#: Target size of one tile's column matrix, in bytes. Measured on a
#: 2-core Xeon (2 MB L2 per core, large L3), 3x3 layers of 7x7 ... 56x56:
#: 1-8 MB tiles all beat the whole-batch matrix (by up to 1.5x on 56x56),
#: 8 MB slightly the best, as larger tiles make fewer, longer GEMMs.
TILE_BYTES = 8 << 20


def _tiles(N, OH, row_bytes, budget, parts=1):
    """(n0, NB, r0, R) tiles covering N images of OH output rows, each
    ``row_bytes`` of columns: whole images when one fits in ``budget``,
    else bands of rows of one image; at least ``parts`` tiles (one per
    thread) where there are that many images or rows."""
    image_bytes = row_bytes * OH
    if image_bytes <= budget and N >= parts:
        nb = min(budget // image_bytes, -(-N // parts))
        return [(n0, min(nb, N - n0), 0, OH) for n0 in range(0, N, nb)]
    R = max(1, min(budget // row_bytes, -(-N * OH // parts)))
    return [(n, 1, r0, min(R, OH - r0)) for n in range(N) for r0 in range(0, OH, R)]


def _buffer(tiles, K, OW, dtype):
    """Room for the largest tile's column matrix (K, NB*R*OW)."""
    return numpy.empty(max(nb * R for _, nb, _, R in tiles) * K * OW, dtype=dtype)


def _by_image(tiles):
    """Tiles grouped so that no image is split between two groups: col2im
    adds a band's border rows into its neighbours' rows."""
    groups = {}
    for tile in tiles:
        groups.setdefault(tile[0], []).append(tile)
    return list(groups.values())


#: Fewest 2x2 output tiles (N * ceil(OH/2) * ceil(OW/2)) for which Winograd
#: beats im2col + GEMM: below, the filter transform (16 O C values) is not
#: spread over enough tiles. Measured on a 2-core Sapphire Rapids Xeon,
#: ResNet layers of batch 8-16, forward: 2x2 outputs (16 tiles) 3.1 ms
#: im2col against 5.6 ms Winograd; 4x4 (64 tiles) even; 8x8 (256) 3.4
#: against 2.6; 56x56 25 against 15. 7x7 x 512 channels (128 tiles) is
#: even on one thread, and loses on two (fwd+bwd 39 against 55 ms). The
#: same held with today's kernels: 7x7 x 512 fwd/gx/gw 8.2/8.9/9.1 ms
#: im2col, 9.1/10.7/12.8 F(2x2), 15.5/16.1/31.4 F(4x4). Since im2col and
#: col2im copy small maps through a table of taps (``im2col.py``), 8x8 at
#: batch 16 x 128 channels (256 tiles) is im2col's too: 1.9/1.9/2.1 ms
#: against F(2x2)'s 1.9/2.1/2.4; 8 x 14x14 x 128 (392 tiles) stays
#: F(2x2)'s, 2.5/2.5/3.0 against 3.1/3.8/3.5.
WINOGRAD_MIN_TILES = 320
#: Smallest output (rows and columns) for F(4x4, 3x3) rather than F(2x2,
#: 3x3). Its 6x6 tiles overlap less (2.25 transformed values per output
#: against 4) but need more outputs per tile row. Measured fwd+gx+gw, 2
#: threads, same process: 8x64x56x56 F(2x2) 26.5 ms, F(4x4) 21.7; 28x28
#: 19.5, 16.4; 16x64x16x16 5.8, 5.2; 8x256x14x14 19.0, 23.1; 16x128x8x8
#: 7.1, 8.5. On 16x16 the two are close (F(4x4)'s spare tile is a fifth
#: of its tiles there): alone, either wins by ~10% from run to run, and
#: inside the ResNet-18 step (four such layers) F(2x2) was 3-4 ms faster
#: in each of three same-process A/B runs (133 against 137 ms), so
#: F(4x4) starts above 16.
WINOGRAD_4X4_MIN_SIZE = 17


def _winograd_tile(kernel_size, stride, dilation, groups, out_size, N):
    """m of the F(m x m, 3x3) to use, or 0 for none: Winograd applies to a
    3x3, stride-1, undilated, ungrouped convolution with enough output
    tiles for it to pay."""
    TH, TW = tile_grid(out_size, 2)
    if not (tuple(kernel_size) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and groups == 1 and N * TH * TW >= WINOGRAD_MIN_TILES):
        return 0
    return 4 if min(out_size) >= WINOGRAD_4X4_MIN_SIZE else 2


def _is_depthwise(C, groups):
    """One input channel per group (any number of outputs per channel)."""
    return groups == C


def _is_dense(out_size, padding, groups):
    """One output pixel per image, unpadded, ungrouped: a linear layer."""
    return tuple(out_size) == (1, 1) and padding == ((0, 0), (0, 0)) and groups == 1


def _window_index(kernel_size, dilation):
    """The index of the one window a 1x1-output convolution reads, in an
    (N, C, H, W) array: x[_window_index(...)] is (N, C, KH, KW)."""
    (KH, KW), (dh, dw) = kernel_size, dilation
    return (slice(None), slice(None), slice(0, (KH - 1) * dh + 1, dh), slice(0, (KW - 1) * dw + 1, dw))


def _window(x, kernel_size, dilation):
    """(N, C*KH*KW): the one window of each image of x that a 1x1-output
    convolution reads, its pixels in w's (C, KH, KW) order."""
    return x[_window_index(kernel_size, dilation)].reshape(x.shape[0], -1)


def _is_pointwise(kernel_size, padding):
    """A 1x1 kernel on the unpadded input: its columns are x (subsampled)."""
    return kernel_size == (1, 1) and padding == ((0, 0), (0, 0))


def _slices(count, parts):
    """range(count) cut into at most ``parts`` consecutive slices."""
    return [slice(run.start, run.stop) for run in split(range(count), parts)]


def _by_images(gemms, N):
    """[gemms(images) for each thread's slice of the N images]: a 1x1
    convolution's batched GEMMs, shared out like the tiles of the others."""
    return run_in_parallel(gemms, _slices(N, thread_count()))


def _subsample(x, stride, out_size):
    """x[:, :, ::sh, ::sw] cut to out_size, C-contiguous: the columns of a
    1x1 convolution."""
    (sh, sw), (OH, OW) = stride, out_size
    return numpy.ascontiguousarray(x[:, :, :(OH - 1) * sh + 1:sh, :(OW - 1) * sw + 1:sw])


def conv2d_forward(x, w, b, stride, padding, dilation, groups, out_size):
    """y (N, O, OH, OW) = conv2d(x, w) + b; b may be None."""
    x = numpy.ascontiguousarray(x)
    N, C, H, W = x.shape
    O, KH, KW = w.shape[0], w.shape[2], w.shape[3]
    G, OH, OW = groups, out_size[0], out_size[1]
    (sh, sw), (dh, dw), ((top, _), (left, _)) = stride, dilation, padding
    y = numpy.empty((N, O, OH, OW), dtype=x.dtype)
    if _is_depthwise(C, G):
        bias = numpy.zeros(O, x.dtype) if b is None else numpy.ascontiguousarray(b)
        depthwise_forward(x, numpy.ascontiguousarray(w.reshape(O, KH, KW)), bias, y, sh, sw, top, left, dh, dw)
        return y
    if _is_dense(out_size, padding, G):
        numpy.matmul(_window(x, (KH, KW), (dh, dw)), w.reshape(O, -1).T, out=y.reshape(N, O))
        if b is not None:
            y += b.reshape(O, 1, 1)
        return y
    m = _winograd_tile((KH, KW), stride, dilation, G, out_size, N)
    if m:
        return winograd_conv2d(x, w, b, padding, out_size, m)
    Og, L = O // G, OH * OW
    wg = w.reshape(G, Og, -1)
    yg = y.reshape(N, G, Og, L)
    if _is_pointwise((KH, KW), padding):
        xs = _subsample(x, stride, out_size).reshape(N, G, C // G, L)

        def gemms(images):              # one thread's images
            numpy.matmul(wg, xs[images], out=yg[images])
            if b is not None:
                yg[images] += b.reshape(G, Og, 1)
        _by_images(gemms, N)
        return y
    K = C * KH * KW
    threads = thread_count()
    tiles = _tiles(N, OH, K * OW * x.itemsize, TILE_BYTES, threads)
    bg = None if b is None else b.reshape(G, Og, 1)

    def work(group):                    # one thread's tiles; they write disjoint parts of y
        buf = _buffer(group, K, OW, x.dtype)
        for n0, nb, r0, R in group:
            cols = buf[:K * nb * R * OW].reshape(C, KH, KW, nb, R, OW)
            im2col_tile(x, cols, n0, r0, sh, sw, top, left, dh, dw)
            cols = cols.reshape(G, K // G, nb * R * OW)
            if nb == 1:
                out = yg[n0, :, :, r0 * OW:(r0 + R) * OW]              # (G, Og, R*OW), a view of y
                numpy.matmul(wg, cols, out=out)
                if bg is not None:
                    out += bg
            else:
                out = numpy.matmul(wg, cols).reshape(G, Og, nb, L)       # images side by side
                if bg is not None:
                    out += bg[:, :, :, None]
                yg[n0:n0 + nb] = out.transpose(2, 0, 1, 3)
    run_in_parallel(work, split(tiles, threads))
    return y


def _gy_band(gy, n0, nb, r0, R, G, Og, OW):
    """Tile (G, Og, nb*R*OW) of gy (N, O, OH*OW): a view for a band of one
    image, a copy with the images side by side for several."""
    if nb == 1:
        return gy[n0].reshape(G, Og, -1)[:, :, r0 * OW:(r0 + R) * OW]
    L = gy.shape[2]
    return gy[n0:n0 + nb].reshape(nb, G, Og, L).transpose(1, 2, 0, 3).reshape(G, Og, nb * L)


def conv2d_grad_input(gy, w, stride, padding, dilation, groups, in_size):
    """gx (N, C, H, W) for gy (N, O, OH, OW): the adjoint of conv2d_forward
    in x, which is also conv_transpose2d(gy, w)."""
    gy = numpy.ascontiguousarray(gy)
    N, O, OH, OW = gy.shape
    G, KH, KW = groups, w.shape[2], w.shape[3]
    C, (H, W) = w.shape[1] * G, in_size
    (sh, sw), (dh, dw), ((top, _), (left, _)) = stride, dilation, padding
    if _is_depthwise(C, G):
        gx = numpy.empty((N, C, H, W), dtype=gy.dtype)
        depthwise_grad_input(gy, numpy.ascontiguousarray(w.reshape(O, KH, KW)), gx, sh, sw, top, left, dh, dw)
        return gx
    if _is_dense((OH, OW), padding, G):
        gx = numpy.zeros((N, C, H, W), dtype=gy.dtype)
        window = gx[_window_index((KH, KW), (dh, dw))]
        window[...] = (gy.reshape(N, O) @ w.reshape(O, -1)).reshape(window.shape)
        return gx
    m = _winograd_tile((KH, KW), stride, dilation, G, (H, W), N)
    if m:
        # At stride 1, gx is the full correlation of gy with the flipped
        # filters, in and out channels swapped: a 3x3 convolution padded
        # by 2 - padding on each side.
        flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)          # a view: the filter transform reads it
        (bottom, right) = padding[0][1], padding[1][1]
        return winograd_conv2d(gy, flipped, None, ((2 - top, 2 - bottom), (2 - left, 2 - right)), (H, W), m)
    Og, L = O // G, OH * OW
    wgT = w.reshape(G, Og, -1).transpose(0, 2, 1)                        # (G, Kg, Og), a view
    gyg = gy.reshape(N, G, Og, L)
    if _is_pointwise((KH, KW), padding):
        gxs = numpy.empty((N, G, C // G, L), dtype=gy.dtype)
        _by_images(lambda images: numpy.matmul(wgT, gyg[images], out=gxs[images]), N)
        gxs = gxs.reshape(N, C, OH, OW)
        if (OH, OW) == (H, W):
            return gxs
        gx = numpy.zeros((N, C, H, W), dtype=gy.dtype)
        gx[:, :, :(OH - 1) * sh + 1:sh, :(OW - 1) * sw + 1:sw] = gxs
        return gx
    gx = numpy.zeros((N, C, H, W), dtype=gy.dtype)
    K = C * KH * KW
    threads = thread_count()
    tiles = _tiles(N, OH, K * OW * gy.itemsize, TILE_BYTES, threads)
    gy = gy.reshape(N, O, L)

    def work(images):                   # one thread's images, each image's bands together
        group = [tile for image in images for tile in image]
        buf = _buffer(group, K, OW, gy.dtype)
        for n0, nb, r0, R in group:
            cols = buf[:K * nb * R * OW].reshape(C, KH, KW, nb, R, OW)
            numpy.matmul(wgT, _gy_band(gy, n0, nb, r0, R, G, Og, OW), out=cols.reshape(G, K // G, nb * R * OW))
            col2im_tile(cols, gx, n0, r0, sh, sw, top, left, dh, dw)
    run_in_parallel(work, split(_by_image(tiles), threads))
    return gx


#: Output pixels per thread (N*OH*OW / threads) up to which the weight
#: gradient is split among the threads by output channel rather than by
#: tile: with so few pixels each thread's partial gw (O x C*KH*KW, as
#: large as the weights) costs more to add up than the products. 16 x
#: 512 channels of 2x2 (32 pixels a thread): 3.3 -> 2.3 ms; 16 x 256 of
#: 4x4 (128 a thread): 2.1 either way; 16 x 128 of 8x8: 2.1 -> 2.8.
GRAD_WEIGHT_BY_CHANNELS_PIXELS = 64


def _grad_weight_by_channels(x, gy, out_size, kernel_size, stride, dilation, corner, threads):
    """gw (O, C, KH, KW) of an ungrouped convolution with few output
    pixels, for gy (N, O, OH*OW): each thread builds the whole column
    matrix (small, for so few pixels) and computes the rows of gw of its
    share of the output channels, so there are no partial sums to add."""
    N, C = x.shape[:2]
    O, (OH, OW) = gy.shape[1], out_size
    (KH, KW), (sh, sw), (dh, dw), (top, left) = kernel_size, stride, dilation, corner
    K = C * KH * KW
    gw = numpy.empty((O, K), x.dtype)

    def work(channels):                 # one thread's output channels: rows of gw
        cols = numpy.empty((C, KH, KW, N, OH, OW), x.dtype)
        im2col_tile(x, cols, 0, 0, sh, sw, top, left, dh, dw)
        gy_rows = gy[:, channels].transpose(1, 0, 2).reshape(-1, N * OH * OW)   # (O share, N*L)
        numpy.matmul(gy_rows, cols.reshape(K, -1).T, out=gw[channels])
    run_in_parallel(work, _slices(O, threads))
    return gw.reshape(O, C, KH, KW)


def _weight_product_transposed(K, T):
    """Whether a tile's weight-gradient product, gy (Og, T) @ cols^T (T,
    K), is better computed as its transpose, cols (K, T) @ gy^T (T, Og),
    to be transposed once at the end: OpenBLAS runs it 1.1-1.8x faster
    that way once the tile's pixels T are at least half its rows K
    (measured, one thread: LeNet-5's C3, Og 16, K 150, T 3200: 0.42 ->
    0.24 ms; its C1 0.54 -> 0.34; ResNet's 7x7 stem 2.1 -> 1.7), and far
    slower when they are few (512 x 2x2 maps, T 32: 1.9 -> 11.7 ms)."""
    return 2 * T >= K


def conv2d_grad_weight(x, gy, kernel_size, stride, padding, dilation, groups):
    """gw (O, Cg, KH, KW) = sum over images and pixels of gy times the
    columns of x: the adjoint of conv2d_forward in w."""
    x = numpy.ascontiguousarray(x)
    gy = numpy.ascontiguousarray(gy)
    N, C = x.shape[:2]
    N, O, OH, OW = gy.shape
    G, (KH, KW) = groups, kernel_size
    (sh, sw), (dh, dw), ((top, _), (left, _)) = stride, dilation, padding
    if _is_depthwise(C, G):
        gw = numpy.empty((O, KH, KW), dtype=x.dtype)
        depthwise_grad_weight(x, gy, gw, sh, sw, top, left, dh, dw)
        return gw.reshape(O, 1, KH, KW)
    if _is_dense((OH, OW), padding, G):
        return (gy.reshape(N, O).T @ _window(x, kernel_size, (dh, dw))).reshape(O, C, KH, KW)
    m = _winograd_tile(kernel_size, stride, dilation, G, (OH, OW), N)
    if m:
        return winograd_conv2d_grad_weight(x, gy, padding, m)
    Og, Cg, L = O // G, C // G, OH * OW
    gy = gy.reshape(N, O, L)
    if _is_pointwise((KH, KW), padding):
        xs = _subsample(x, stride, (OH, OW)).reshape(N, G, Cg, L)
        gyg = gy.reshape(N, G, Og, L)
        gw = _by_images(lambda images: numpy.matmul(gyg[images], xs[images].transpose(0, 1, 3, 2)).sum(axis=0), N)
        return sum_in_place(gw).reshape(O, Cg, KH, KW)
    K = C * KH * KW
    threads = thread_count()
    if threads > 1 and G == 1 and N * L <= GRAD_WEIGHT_BY_CHANNELS_PIXELS * threads:
        return _grad_weight_by_channels(x, gy, (OH, OW), kernel_size, stride, dilation, (top, left), threads)
    tiles = _tiles(N, OH, K * OW * x.itemsize, TILE_BYTES, threads)
    transposed = _weight_product_transposed(K // G, max(nb * R for _, nb, _, R in tiles) * OW)

    def work(group):                    # one thread's share of the sum over tiles
        gw = numpy.empty((G, K // G, Og) if transposed else (G, Og, K // G), dtype=x.dtype)
        buf = _buffer(group, K, OW, x.dtype)
        for i, (n0, nb, r0, R) in enumerate(group):
            cols = buf[:K * nb * R * OW].reshape(C, KH, KW, nb, R, OW)
            im2col_tile(x, cols, n0, r0, sh, sw, top, left, dh, dw)
            cols = cols.reshape(G, K // G, nb * R * OW)
            gy_tile = _gy_band(gy, n0, nb, r0, R, G, Og, OW)
            if transposed:
                matmul_into(gw, cols, gy_tile.transpose(0, 2, 1), add=i > 0)
            else:
                matmul_into(gw, gy_tile, cols.transpose(0, 2, 1), add=i > 0)
        return gw
    gw = sum_in_place(run_in_parallel(work, split(tiles, threads)))
    return numpy.ascontiguousarray(gw.transpose(0, 2, 1) if transposed else gw).reshape(O, Cg, KH, KW)
