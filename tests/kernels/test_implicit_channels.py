"""The implicit GEMM with the output channels in the vector lanes
(``kernels/cpu/implicit_channels.py``) and the strategy's "channels" path,
against the NumPy reference (im2col, then one matmul, in float64).

The kernels (forward, weight gradient, and the input gradient through
the flipped filters) are drawn on every geometry they take: groups, kernels square and not,
wider than 16 taps, strides, dilations, symmetric padding, output
channels that leave part of a 16-lane vector or of a block empty, maps
smaller than a tile, batches below and above the thread count, images
laid out alone and in groups; the weight packing against
``implicit_gemm.pack``; the strategy's rule on its bounds.
"""
import numpy
import pytest
from hypothesis import given, settings, strategies as st

from minicnn.functional import conv_strategy
from minicnn.kernels import registry
from paths import path as _path
from references import conv_reference
from strategies import conv_arrays, conv_geometries

pytest.importorskip("numba")
from minicnn.kernels.cpu import implicit_channels, implicit_gemm, threads as threads_module  # noqa: E402

# float32 sums of `terms` products of standard normals: relative to their size.
RTOL = 2e-5


def _reference(direction, *args):
    """The NumPy reference of ``direction``, on float64 copies."""
    return conv_reference(direction)(*[a.astype(numpy.float64) if isinstance(a, numpy.ndarray) else a for a in args])


def geometries():
    """(N, C, O, groups, kernel, stride, padding, dilation, in_size,
    out_size): any grouping, 1 to 70 output channels a group (1 to 5
    vectors of 16, full or not), kernels of 1 to 49 taps."""
    return conv_geometries(st.sampled_from([1, 1, 2, 3]), (1, 12), (1, 70),
                           [(3, 3), (3, 3), (5, 5), (7, 7), (1, 7), (7, 1), (2, 4), (1, 1)], ((1, 3), (1, 2)),
                           max_padding=3, extra=13, images=5)


def _threads(patch, threads, group_bytes):
    """Run the kernels on ``threads`` threads, every batch shared out
    however small, images grouped by at most ``group_bytes``."""
    patch.setattr(implicit_channels, "thread_count", lambda: threads)
    patch.setattr(threads_module, "thread_count", lambda: threads)
    patch.setattr(implicit_channels, "PARALLEL_MACS", 0)
    patch.setattr(implicit_channels, "GROUP_BYTES", group_bytes)


def _flipped_fits(padding, dilation, kernel, stride):
    """Whether the input gradient is a convolution by the flipped filters
    (of gy upsampled, at a stride): padding within the kernel's reach."""
    return all(p[0] <= d * (k - 1) for p, d, k in zip(padding, dilation, kernel))


@settings(max_examples=60, deadline=None)
@given(st.data(), geometries(), st.sampled_from([1, 2, 3]), st.sampled_from([0, 4096, 1 << 20]), st.booleans())
def test_the_kernels_match_the_reference(data, geometry, threads, group_bytes, bias):
    """The forward and the weight gradient, and the input gradient (at a
    stride, of gy upsampled) where the padding is within the kernel's
    reach."""
    N, C, O, G, kernel, stride, padding, dilation, in_size, out_size = geometry
    x, w, b, gy = conv_arrays(data, N, C, O, G, kernel, in_size, out_size, numpy.float32, bias)
    with pytest.MonkeyPatch.context() as patch:
        _threads(patch, threads, group_bytes)
        y = implicit_channels.conv2d(x, w, b, stride, padding, dilation, G, out_size)
        gw = implicit_channels.conv2d_grad_weight(x, gy, kernel, stride, padding, dilation, G)
        gx = None
        if _flipped_fits(padding, dilation, kernel, stride):
            gx = implicit_channels.conv2d_grad_input(gy, w, stride, padding, dilation, G, in_size)
    expected = _reference("forward", x, w, b, stride, padding, dilation, G, out_size)
    assert y.shape == expected.shape and y.dtype == numpy.float32
    numpy.testing.assert_allclose(y, expected, rtol=RTOL, atol=RTOL * (C // G) * kernel[0] * kernel[1])
    expected = _reference("grad_weight", x, gy, kernel, stride, padding, dilation, G)
    assert gw.shape == expected.shape and gw.dtype == numpy.float32
    numpy.testing.assert_allclose(gw, expected, rtol=RTOL, atol=RTOL * N * out_size[0] * out_size[1])
    if gx is not None:
        expected = _reference("grad_input", gy, w, stride, padding, dilation, G, in_size)
        assert gx.shape == expected.shape and gx.dtype == numpy.float32
        numpy.testing.assert_allclose(gx, expected, rtol=RTOL, atol=RTOL * (O // G) * kernel[0] * kernel[1])


@settings(max_examples=40, deadline=None)
@given(st.data(), geometries(), st.sampled_from([1, 2, 3]), st.sampled_from([0, 4096, 1 << 20]))
def test_skipping_the_paddings_taps_changes_no_bit(data, geometry, threads, group_bytes):
    """Each pixel sums only the taps that read its input, not the padding
    (``border_classes``): the same nonzero products in the same order as
    with every tap, so the same bits, forward and input gradient."""
    N, C, O, G, kernel, stride, padding, dilation, in_size, out_size = geometry
    x, w, b, gy = conv_arrays(data, N, C, O, G, kernel, in_size, out_size, numpy.float32, True)
    results = []
    with pytest.MonkeyPatch.context() as patch:
        _threads(patch, threads, group_bytes)
        for below in (0.0, 1.0):        # every tap; skipped wherever one reads the padding
            patch.setattr(implicit_channels, "BORDER_CLASSES_BELOW", below)
            y = implicit_channels.conv2d(x, w, b, stride, padding, dilation, G, out_size)
            gx = None
            if _flipped_fits(padding, dilation, kernel, stride):
                gx = implicit_channels.conv2d_grad_input(gy, w, stride, padding, dilation, G, in_size)
            results.append((y, gx))
    (y_all, gx_all), (y_read, gx_read) = results
    numpy.testing.assert_array_equal(y_read, y_all)
    if gx_all is not None:
        numpy.testing.assert_array_equal(gx_read, gx_all)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 5), st.integers(1, 5), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 3), st.integers(0, 3), st.integers(1, 2), st.integers(1, 4),
       st.sampled_from([6, 12, 24]))
def test_each_tile_sums_every_tap_its_pixels_read(H, W, KH, KW, sh, sw, ph, pw, d, images, P):
    """``_table`` lists every output pixel of the images once, each with
    its offset in the planes and its place in the output, and gives each
    tile every tap that reads the input (not the padding) at any of its
    pixels: ``border_classes``'s classes against the geometry itself."""
    OH, OW = (H + 2 * ph - d * (KH - 1) - 1) // sh + 1, (W + 2 * pw - d * (KW - 1) - 1) // sw + 1
    if OH < 1 or OW < 1:
        return
    classes = implicit_channels._border_classes((H, W), (KH, KW), (sh, sw), (ph, pw), (d, d), (OH, OW), 1.0)
    T, WQ, image_stride, image_outputs = KH * KW, OW + 7, 1000, 5000
    tap_offsets, tap_weights = numpy.arange(T) * 10, numpy.arange(T) * 100
    table = implicit_channels._new_table(images * OH * OW, T, P)
    count = implicit_channels._table(images, image_stride, image_outputs, OH, OW, WQ, classes, tap_offsets,
                                     tap_weights, P, 1.0, table)
    pixels, positions, runs, tile_taps, list_offsets, list_weights = table
    assert count == images * OH * OW
    for m in range(count):              # runs: the pixels from m on that land side by side, no further
        end = runs[m]
        assert m < end <= count and list(positions[m:end]) == list(range(positions[m], positions[m] + end - m))
        assert end == count or positions[end] != positions[end - 1] + 1
    expected = sorted(n * image_outputs + oh * OW + ow for n in range(images) for oh in range(OH) for ow in range(OW))
    assert sorted(positions[:count]) == expected
    for m in range(count):
        n, q = divmod(int(positions[m]), image_outputs)
        oh, ow = divmod(q, OW)
        assert pixels[m] == n * image_stride + oh * WQ + ow
        start, stop = tile_taps[m // P]
        taps = set(list_weights[start:stop] // 100)
        assert list(list_offsets[start:stop]) == sorted(t * 10 for t in taps)
        for kh in range(KH):
            for kw in range(KW):
                reads = 0 <= oh * sh - ph + kh * d < H and 0 <= ow * sw - pw + kw * d < W
                assert not reads or kh * KW + kw in taps
    assert not pixels[count:count + P].any()


def test_skipping_the_paddings_taps_is_kept_for_small_maps():
    """Where the padding's taps are few (a 56x56 map) every pixel takes
    every tap; on a 4x4 map with a 3x3 kernel, 100 of 144 (pixel, tap)
    pairs read the input, and the classes keep exactly those."""
    every = implicit_channels.border_classes((56, 56), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), (56, 56))
    assert [len(taps) for taps in every[2:]] == [1, 1] and every[2].all() and every[3].all()
    row_class, col_class, row_taps, col_taps = implicit_channels.border_classes((4, 4), (3, 3), (1, 1),
                                                                                ((1, 1), (1, 1)), (1, 1), (4, 4))
    pairs = row_taps[row_class].sum() * col_taps[col_class].sum()
    assert pairs == 100 and len(row_taps) == len(col_taps) == 3


def test_a_strided_input_gradient_refuses_an_input_too_small_for_gy():
    w = numpy.ones((16, 4, 3, 3), numpy.float32)
    gy = numpy.ones((1, 16, 4, 4), numpy.float32)
    with pytest.raises(ValueError, match=r"input \(5, 8\) is smaller than stride \(2, 2\) gives output \(4, 4\)"):
        implicit_channels.conv2d_grad_input(gy, w, (2, 2), ((1, 1), (1, 1)), (1, 1), 1, (5, 8))
    gx = implicit_channels.conv2d_grad_input(gy, w, (2, 2), ((1, 1), (1, 1)), (1, 1), 1, (8, 8))
    expected = _reference("grad_input", gy, w, (2, 2), ((1, 1), (1, 1)), (1, 1), 1, (8, 8))
    numpy.testing.assert_allclose(gx, expected, rtol=RTOL, atol=RTOL * 16 * 9)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 70), st.integers(1, 40), st.sampled_from([(3, 3), (1, 1), (5, 5), (7, 7),
                                                                                    (1, 7), (4, 6)]),
       st.integers(0, 2**32 - 1))
def test_the_packed_weights_are_implicit_gemms_layout(G, Og, Cg, kernel, seed):
    """``_pack`` (16 x 16 blocks transposed in registers, the rest one by
    one) lays out w as ``implicit_gemm.pack`` does, and its flipped mode
    the flipped filters (``conv_strategy._flipped``) the same way."""
    w = numpy.random.default_rng(seed).standard_normal((G * Og, Cg) + kernel).astype(numpy.float32)
    T = kernel[0] * kernel[1]
    for flip, (O, inputs) in ((False, (G * Og, Cg)), (True, (G * Cg, Og))):
        CB = 16 * implicit_channels.vectors_a_block(O // G, 240)
        wp = numpy.full((G, -(-(O // G) // CB), T, inputs, CB), numpy.nan, numpy.float32)
        implicit_channels._pack(w.reshape(G * Og, -1), G, flip, wp, 0, 1)
        expected = implicit_gemm.pack(numpy.ascontiguousarray(conv_strategy._flipped(w, G)) if flip else w, G, CB)
        numpy.testing.assert_array_equal(wp, expected)


@pytest.mark.parametrize("Og, pixels, NV", [(16, 240, 1), (24, 240, 2), (32, 240, 2), (48, 240, 3), (64, 240, 2),
                                            (80, 240, 1), (144, 240, 3), (200, 240, 1), (512, 240, 2), (1, 240, 1),
                                            (512, 49, 4), (64, 49, 4), (32, 49, 2), (96, 16, 3)])
def test_a_block_computes_the_fewest_spare_channels_and_pixels(Og, pixels, NV, monkeypatch):
    """With AVX-512's tiles, NV vectors of 16 output channels a block, P =
    24 / NV pixels a tile: the fewest (channel, pixel) pairs computed for
    Og channels and ``pixels`` pixels, then 2 vectors. AVX2's tiles are
    one vector by 6 pixels, whatever the layer."""
    monkeypatch.setattr(implicit_channels, "PIXELS", {nv: 24 // nv for nv in (1, 2, 3, 4)})
    monkeypatch.setattr(implicit_channels, "BLOCK_VECTORS", (2, 4, 3, 1))
    assert implicit_channels.vectors_a_block(Og, pixels) == NV
    monkeypatch.setattr(implicit_channels, "PIXELS", {nv: 6 // nv for nv in (1, 2, 3, 4)})
    monkeypatch.setattr(implicit_channels, "BLOCK_VECTORS", (1,))
    assert implicit_channels.vectors_a_block(Og, pixels) == 1


@given(st.integers(1, 5000), st.sampled_from([6, 8, 12, 24]), st.integers(1, 40), st.sampled_from([1, 2, 4, 6, 8]))
def test_a_shared_batch_is_cut_into_even_chunks(count, P, blocks, parts):
    """A batch the threads share is cut into chunks of whole tiles, at most
    CHUNK_PIXELS each, covering every pixel; as many chunks as the pixels
    need or up to parts - 1 more, the first count that makes the tasks a
    multiple of the parts where one does, the tiles spread evenly."""
    chunk = implicit_channels.even_chunk(count, P, blocks, parts)
    assert chunk % P == 0 and P <= chunk <= implicit_channels.CHUNK_PIXELS
    tiles, fewest = -(-count // P), -(-count // implicit_channels.CHUNK_PIXELS)
    chunks = -(-count // chunk)
    assert fewest <= chunks <= fewest + parts - 1
    evening = [k for k in range(fewest, min(fewest + parts, tiles + 1)) if blocks * k % parts == 0]
    if evening:
        # the tiles spread over evening[0] chunks: no chunk a tile more than another, the last maybe fewer
        assert chunk // P == -(-tiles // evening[0])
    else:
        assert chunks == fewest


@pytest.mark.parametrize("N", [1, 5])
def test_the_numbers_are_the_same_on_any_number_of_threads_and_in_any_group(N, monkeypatch):
    """Each output value is summed whole by one tile, taps then channels,
    whichever thread and whichever tile (pixels from one image or two):
    the bits do not depend on the thread count or on how the images are
    grouped, and an image gives the same numbers alone as in a batch. Each
    weight gradient is summed by one task over all the pixels in order."""
    rng = numpy.random.default_rng(N)
    x = rng.standard_normal((N, 24, 9, 11)).astype(numpy.float32)
    w = rng.standard_normal((40, 24, 3, 3)).astype(numpy.float32)
    gy = rng.standard_normal((N, 40, 9, 11)).astype(numpy.float32)
    geometry = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    results = []
    for threads, group_bytes in ((1, 1 << 20), (2, 0), (3, 1 << 20), (2, 30000)):
        _threads(monkeypatch, threads, group_bytes)
        results.append((implicit_channels.conv2d(x, w, None, *geometry, (9, 11)),
                        implicit_channels.conv2d_grad_input(gy, w, *geometry, (9, 11)),
                        implicit_channels.conv2d_grad_weight(x, gy, (3, 3), *geometry)))
    for y, gx, gw in results[1:]:
        numpy.testing.assert_array_equal(y, results[0][0])
        numpy.testing.assert_array_equal(gx, results[0][1])
        numpy.testing.assert_array_equal(gw, results[0][2])
    alone = implicit_channels.conv2d(x[-1:], w, None, *geometry, (9, 11))
    numpy.testing.assert_array_equal(alone, results[0][0][-1:])


@pytest.mark.usefixtures("fast_kernel")
def test_the_rule_replaces_im2col_and_the_grouped_kernels_with_enough_output_channels():
    if not registry.find("channels_conv2d", numpy):
        pytest.skip("the backend in force has no channels path (MINICNN_BACKEND=numpy)")
    pixels = conv_strategy.CHANNELS_MIN_FORWARD_PIXELS
    outputs = conv_strategy.CHANNELS_MIN_GROUP_OUTPUTS
    stride2 = ((2, 2), ((1, 1), (1, 1)))
    assert _path(8, 64, 128, 1, (3, 3), *stride2) == "channels"                        # im2col's
    assert _path(8, 128, 128, 1, (1, 7), padding=((0, 0), (3, 3)), out_size=(17, 17)) == "channels"
    assert _path(1, 256, 256, 1, (3, 3), padding=((2, 2), (2, 2)), dilation=(2, 2)) == "channels"
    assert _path(1, 64, outputs, 1, (3, 3), *stride2, out_size=(23, 23)) == "channels"     # 529 pixels
    assert _path(1, 64, outputs - 1, 1, (3, 3), *stride2, out_size=(23, 23)) != "channels"
    assert _path(1, 512, 512, 1, (3, 3), *stride2, out_size=(7, 7)) != "channels"           # 49 pixels
    assert _path(pixels // 49 - 1, 512, 512, 1, (3, 3), *stride2, out_size=(7, 7)) != "channels"
    assert _path(pixels // 49, 512, 512, 1, (3, 3), *stride2, out_size=(7, 7)) == "channels"
    # grouped: in a batch, whatever the pixels; 16 output channels a group
    assert _path(8, 512, 512, 32, (3, 3), out_size=(7, 7)) == "channels"                 # the "grouped" path's
    assert _path(8, 512, 512, 32, (3, 3)) == "channels"                                  # the "implicit" path's
    assert _path(8, 256, 256, 32, (3, 3)) != "channels"                                  # 8 a group
    assert _path(1, 512, 512, 32, (3, 3)) != "channels"                                  # a lone image
    # the input gradient: at stride 1, with Cg (gx's channels a group) for Og
    assert _path(16, 128, 32, 1, (3, 3), out_size=(7, 7), direction="grad_input") == "channels"    # 784 pixels
    assert _path(8, 128, 32, 1, (3, 3), out_size=(7, 7), direction="grad_input") != "channels"     # 392
    assert conv_strategy.CHANNELS_MIN_PIXELS > 8 * 49
    assert _path(8, 8, 32, 1, (5, 5), padding=((2, 2), (2, 2)), direction="grad_input") != "channels"
    assert _path(8, 64, 128, 1, (3, 3), *stride2, direction="grad_input") != "channels"
    assert _path(8, 512, 512, 32, (3, 3), direction="grad_input") == "channels"
    # the weight gradient: im2col's, at stride 1
    assert _path(32, 128, 32, 1, (3, 3), out_size=(7, 7), direction="grad_weight") == "channels"
    assert _path(8, 512, 512, 32, (3, 3), out_size=(7, 7), direction="grad_weight") == "channels"
    assert _path(8, 512, 512, 32, (3, 3), direction="grad_weight") == "implicit"          # not implicit's
    assert _path(8, 64, 128, 1, (3, 3), *stride2, direction="grad_weight") != "channels"
    # what it never replaces, and never takes
    assert _path(8, 128, 128, 1, (3, 3)).startswith("winograd")
    assert _path(8, 64, 128, 1, (1, 1), (2, 2), ((0, 0), (0, 0))) == "pointwise"
    assert _path(8, 3, 64, 1, (7, 7), (2, 2), ((3, 3), (3, 3))) == "implicit"           # ungrouped, few taps
    assert _path(8, 64, 128, 1, (3, 3), *stride2, dtype=numpy.float64) != "channels"
    assert _path(8, 64, 128, 1, (2, 2), (2, 2), ((0, 1), (0, 1))) != "channels"          # asymmetric padding
    assert _path(8, 128, 128, 128, (3, 3)) == "depthwise"


def test_the_rule_keeps_off_a_cpu_where_the_kernel_is_slow(monkeypatch):
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: None)
    assert _path(8, 64, 128, 1, (3, 3), (2, 2)) != "channels"


def test_on_avx2_the_rule_takes_grouped_layers_and_short_dense_ones(monkeypatch):
    """With AVX2's smaller tiles the path takes a grouped convolution as
    on AVX-512, an ungrouped one only with at most
    ``CHANNELS_AVX2_MAX_DENSE_OUTPUTS`` output channels (the input
    gradient's: C) and more taps than the "implicit" path's bound."""
    if not registry.find("channels_conv2d", numpy):
        pytest.skip("the backend in force has no channels path (MINICNN_BACKEND=numpy)")
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: "avx2")
    most, stride2 = conv_strategy.CHANNELS_AVX2_MAX_DENSE_OUTPUTS, ((2, 2), ((1, 1), (1, 1)))
    taps = conv_strategy.IMPLICIT_MAX_TAPS
    for direction in ("forward", "grad_input", "grad_weight"):
        assert _path(8, 512, 512, 32, (3, 3), out_size=(7, 7), direction=direction) == "channels"
    for direction in ("forward", "grad_input"):
        assert _path(32, most, 32, 1, (3, 3), out_size=(7, 7), direction=direction) == "channels"
    assert _path(32, most, 32, 1, (3, 3), out_size=(7, 7), direction="grad_weight") == "channels"
    assert _path(32, 32, most + 16, 1, (3, 3), out_size=(7, 7), direction="grad_weight") != "channels"
    assert _path(8, 64, most, 1, (3, 3), *stride2) == "channels"
    assert _path(8, 64, most + 16, 1, (3, 3), *stride2) != "channels"
    depth = conv_strategy.CHANNELS_AVX2_MAX_GRAD_INPUT_DEPTH
    assert _path(32, most + 16, depth + 16, 1, (3, 3), out_size=(7, 7), direction="grad_input") != "channels"
    # ... or, for the input gradient, more input channels where gy has few: DenseNet's growth layer
    assert _path(32, 128, 32, 1, (3, 3), out_size=(7, 7), direction="grad_input") == "channels"
    assert _path(32, 512, depth, 1, (3, 3), out_size=(7, 7), direction="grad_input") == "channels"
    assert _path(32, 128, depth + 16, 1, (3, 3), out_size=(7, 7), direction="grad_input") != "channels"
    assert _path(32, 32, depth, 1, (3, 3), out_size=(7, 7)) != "channels"       # a forward of as many outputs
    assert _path(8, taps // 9 + 1, 64, 1, (3, 3), *stride2) == "channels"
    assert _path(8, taps // 9, 64, 1, (3, 3), *stride2) != "channels"          # few taps: the RGB stem's
    assert _path(8, 3, 64, 1, (7, 7), (2, 2), ((3, 3), (3, 3))) != "channels"
    assert _path(32, 128, taps // 9, 1, (3, 3), out_size=(7, 7), direction="grad_input") != "channels"


def test_on_avx2_a_thin_winograd_input_gradient_gives_way_to_the_path(monkeypatch):
    """A Winograd input gradient whose gy has at most
    ``WINOGRAD_GRAD_INPUT_YIELDS`` channels a group, on at most as many
    input pixels in all, takes the path; its forward and weight gradient,
    and larger ones, stay Winograd's."""
    if not registry.find("channels_conv2d", numpy):
        pytest.skip("the backend in force has no channels path (MINICNN_BACKEND=numpy)")
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: "avx2")
    most_channels, most_pixels = conv_strategy.WINOGRAD_GRAD_INPUT_YIELDS
    images = most_pixels // (14 * 14)                                     # DenseNet's block 3 growth layer
    grown = dict(out_size=(14, 14), direction="grad_input")
    assert _path(images, 128, most_channels, 1, (3, 3), **grown) == "channels"
    assert _path(images + 1, 128, most_channels, 1, (3, 3), **grown).startswith("winograd")
    assert _path(images, 128, most_channels + 16, 1, (3, 3), **grown).startswith("winograd")
    assert _path(images, 128, most_channels, 1, (3, 3), out_size=(14, 14)).startswith("winograd")
    assert _path(images, 128, most_channels, 1, (3, 3), out_size=(14, 14),
                 direction="grad_weight").startswith("winograd")
    # AVX-512's own rule (``WINOGRAD_AVX512_YIELDS``) takes such layers while the input stays in cache, not
    # this one, whatever its pixels: a lone 128 x 56x56 image
    assert _path(1, 128, most_channels, 1, (3, 3), out_size=(56, 56), direction="grad_input") == "channels"
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: "avx512")
    assert _path(1, 128, most_channels, 1, (3, 3), out_size=(56, 56), direction="grad_input").startswith("winograd")


@pytest.mark.parametrize("tiles", ["avx2", "avx512"])
def test_a_small_5x5_layers_winograd_gives_way_to_the_path(tiles, monkeypatch):
    """F(2x2, 5x5) yields a 5x5 layer of at most ``WINOGRAD_5X5_YIELDS``
    input channels and output values a group an image, not a larger
    layer, on AVX2 and AVX-512 alike."""
    if not registry.find("channels_conv2d", numpy):
        pytest.skip("the backend in force has no channels path (MINICNN_BACKEND=numpy)")
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: tiles)
    most_inputs, most_outputs = conv_strategy.WINOGRAD_5X5_YIELDS
    same = dict(padding=((2, 2), (2, 2)), out_size=(28, 28))
    outputs = most_outputs // (28 * 28)                              # 32 at 28x28
    for direction in ("forward", "grad_input", "grad_weight"):
        assert _path(8, most_inputs, outputs, 1, (5, 5), direction=direction, **same) == "channels"
        assert _path(8, most_inputs + 8, outputs, 1, (5, 5), direction=direction, **same) == "winograd"
        assert _path(8, most_inputs, outputs + 16, 1, (5, 5), direction=direction, **same) == "winograd"
        assert _path(8, most_inputs, outputs, 1, (5, 5), direction=direction, dtype=numpy.float64,
                     **same) == "winograd"
    assert _path(32, 16, 48, 1, (5, 5), padding=((2, 2), (2, 2)), out_size=(14, 14)) == "channels"


def test_on_avx512_a_strided_input_gradient_takes_the_path_where_the_kernel_covers_each_phase_twice(monkeypatch):
    """At stride s, the input gradient takes the path (gy upsampled) where
    each kernel side is at least ``CHANNELS_STRIDED_GRAD_INPUT_MIN_TAPS``
    times s: a 4x4/2 layer (a DCGAN's, U-Net's transposed convolution),
    not a 3x3/2 or 2x2/2 one, and not on AVX2."""
    if not registry.find("channels_conv2d", numpy):
        pytest.skip("the backend in force has no channels path (MINICNN_BACKEND=numpy)")
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: "avx512")
    least = conv_strategy.CHANNELS_STRIDED_GRAD_INPUT_MIN_TAPS
    stride2 = dict(stride=(2, 2), direction="grad_input")
    k = 2 * least
    assert _path(8, 64, 128, 1, (k, k), padding=((1, 1), (1, 1)), **stride2) == "channels"
    assert _path(8, 64, 128, 2, (k, k), padding=((1, 1), (1, 1)), **stride2) == "channels"
    assert _path(8, 64, 128, 1, (k - 1, k - 1), padding=((1, 1), (1, 1)), **stride2) != "channels"
    assert _path(8, 64, 128, 1, (k, k - 1), padding=((1, 1), (1, 1)), **stride2) != "channels"
    assert _path(8, 64, 128, 1, (2, 2), padding=((0, 0), (0, 0)), **stride2) != "channels"
    assert _path(8, 64, 128, 1, (k, k), padding=((1, 1), (1, 1)), stride=(2, 2)) == "channels"  # its forward
    # through the strategy, against the reference: a 4x4/2 layer with output padding (gx one row and
    # column past the convolution's reach), and grouped
    rng = numpy.random.default_rng(7)
    for G in (1, 2):
        w = rng.standard_normal((64, 32 // G, k, k)).astype(numpy.float32)
        gy = rng.standard_normal((4, 64, 6, 7)).astype(numpy.float32)           # 4 x 13 x 15 gx pixels
        args = (gy, w, (2, 2), ((1, 1), (1, 1)), (1, 1), G, (13, 15))
        assert conv_strategy.conv_path(numpy, 4, 32, G, (k, k), (2, 2), ((1, 1), (1, 1)), (1, 1), (6, 7), (13, 15),
                                       "grad_input", 64, numpy.float32)[0] == "channels"
        numpy.testing.assert_allclose(conv_strategy.conv2d_grad_input(*args), _reference("grad_input", *args),
                                      rtol=RTOL, atol=RTOL * (64 // G) * k * k)
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: "avx2")
    assert _path(8, 64, 128, 1, (k, k), padding=((1, 1), (1, 1)), **stride2) != "channels"


def test_on_avx512_a_thin_3x3_winograd_gives_way_to_the_path(monkeypatch):
    """On AVX-512, a 3x3 Winograd layer of at most
    ``WINOGRAD_AVX512_YIELDS`` output channels a group on an input that
    fits the budget takes the path in every direction, and so does an
    F(2x2) one (a map under ``WINOGRAD_4X4_MIN_SIZE``) of few input or
    output channels a group; wider layers, larger inputs and AVX2 stay
    Winograd's."""
    if not registry.find("channels_conv2d", numpy):
        pytest.skip("the backend in force has no channels path (MINICNN_BACKEND=numpy)")
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: "avx512")
    most_outputs, most_input, most_small_map_channels = conv_strategy.WINOGRAD_AVX512_YIELDS
    side = 28                                                   # F(4x4)
    assert side >= conv_strategy.WINOGRAD_4X4_MIN_SIZE
    fits = most_input // (side * side)                          # input channels that fit the budget
    layers = {(32, fits, most_outputs, side): "channels", (32, fits + 16, most_outputs, side): "winograd",
              (32, fits, most_outputs + 16, side): "winograd",
              (32, most_small_map_channels, 256, 16): "channels", (32, 256, most_small_map_channels, 16): "channels",
              (32, most_small_map_channels + 16, most_small_map_channels + 16, 16): "winograd"}
    for (N, C, O, side), expected in layers.items():
        for direction in ("forward", "grad_input", "grad_weight"):
            assert _path(N, C, O, 1, (3, 3), out_size=(side, side), direction=direction).startswith(expected)
    monkeypatch.setitem(registry._implementations["conv_register_tiles"], "numba", lambda: "avx2")
    assert _path(32, 64, 64, 1, (3, 3), out_size=(16, 16)).startswith("winograd")
    assert _path(32, fits, most_outputs, 1, (3, 3), out_size=(28, 28)).startswith("winograd")


@pytest.mark.usefixtures("fast_kernel")
@settings(max_examples=30, deadline=None)
@given(st.data(), geometries(), st.booleans())
def test_the_strategy_matches_the_reference(data, geometry, bias):
    """Through ``conv_forward``, ``conv_grad_input`` and ``conv_grad_weight``, with the bounds
    lowered so that every geometry the rule allows takes the path
    (asserted), the results agree with the reference."""
    N, C, O, G, kernel, stride, padding, dilation, in_size, out_size = geometry
    x, w, b, gy = conv_arrays(data, N, C, O, G, kernel, in_size, out_size, numpy.float32, bias)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv_strategy, "CHANNELS_MIN_PIXELS", 1)
        patch.setattr(conv_strategy, "CHANNELS_MIN_FORWARD_PIXELS", 1)
        patch.setattr(conv_strategy, "IMPLICIT_MIN_IMAGES", 1)
        for direction, size, outputs in (("forward", out_size, O), ("grad_input", in_size, C),
                                         ("grad_weight", out_size, O)):
            path = conv_strategy.conv_path(numpy, N, C, G, kernel, stride, padding, dilation, out_size, size,
                                           direction, O, numpy.float32)[0]
            replaceable = path == "im2col" or (path == "grouped" and direction != "grad_weight")
            strided_input_gradient = stride == (1, 1) or (
                all(k >= conv_strategy.CHANNELS_STRIDED_GRAD_INPUT_MIN_TAPS * s for k, s in zip(kernel, stride))
                and conv_strategy._register_tiles(numpy) == "avx512")
            applies = {"forward": True,
                       "grad_input": _flipped_fits(padding, dilation, kernel, stride) and strided_input_gradient,
                       "grad_weight": stride == (1, 1)}[direction]
            if replaceable and applies and kernel != (1, 1) and outputs // G >= 16:
                pytest.fail(f"{direction}: {path}, not channels")
            call = {"forward": (x, w, b, stride, padding, dilation, G, out_size),
                    "grad_input": (gy, w, stride, padding, dilation, G, in_size),
                    "grad_weight": (x, gy, kernel, stride, padding, dilation, G)}[direction]
            mine = getattr(conv_strategy, f"conv2d_{direction}")(*call)
            expected = _reference(direction, *call)
            terms = {"forward": C // G * kernel[0] * kernel[1], "grad_input": O // G * kernel[0] * kernel[1],
                     "grad_weight": N * out_size[0] * out_size[1]}[direction]
            assert mine.shape == expected.shape and mine.dtype == numpy.float32
            numpy.testing.assert_allclose(mine, expected, rtol=RTOL, atol=RTOL * terms)
