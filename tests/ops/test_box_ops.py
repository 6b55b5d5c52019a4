"""mc.ops box geometry against torchvision.ops: box_area, box_iou,
generalized_box_iou, box_convert, clip_boxes_to_image,
remove_small_boxes; forward, gradients (random upstream), gradcheck,
degenerate and empty boxes, and bad input."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn import ops
from parity import case_table_tests, check_parity

R = numpy.random.default_rng(21)


def boxes(n, lead=()):
    """xyxy boxes with corners in [0, 20) and sides in [1, 10): pairs
    overlap often, and no coordinate ties another (no max/min ties)."""
    xy = R.uniform(0, 20, lead + (n, 2))
    return numpy.concatenate([xy, xy + R.uniform(1, 10, lead + (n, 2))], axis=-1)


def in_format(fmt, n):
    return torchvision.ops.box_convert(torch.from_numpy(boxes(n)), "xyxy", fmt).numpy()


TV = torchvision.ops
CASES = {
    "area": (ops.box_area, TV.box_area, [boxes(6)]),
    "area_batched_xywh": (lambda b: ops.box_area(b, fmt="xywh"), lambda b: TV.box_area(b, fmt="xywh"),
                          [in_format("xywh", 5)]),
    "iou": (ops.box_iou, TV.box_iou, [boxes(5), boxes(7)]),
    "iou_batched": (ops.box_iou, TV.box_iou, [boxes(4, (2,)), boxes(3, (2,))]),
    "iou_xywh": (lambda a, b: ops.box_iou(a, b, fmt="xywh"), lambda a, b: TV.box_iou(a, b, fmt="xywh"),
                 [in_format("xywh", 4), in_format("xywh", 6)]),
    "iou_cxcywh": (lambda a, b: ops.box_iou(a, b, fmt="cxcywh"), lambda a, b: TV.box_iou(a, b, fmt="cxcywh"),
                   [in_format("cxcywh", 4), in_format("cxcywh", 6)]),
    "giou": (ops.generalized_box_iou, TV.generalized_box_iou, [boxes(5), boxes(6)]),
    "clip": (lambda b: ops.clip_boxes_to_image(b, (15, 18)), lambda b: TV.clip_boxes_to_image(b, (15, 18)),
             [boxes(8) - 3]),
}
for _in in ("xyxy", "xywh", "cxcywh"):
    for _out in ("xyxy", "xywh", "cxcywh"):
        CASES[f"convert_{_in}_{_out}"] = (lambda b, i=_in, o=_out: ops.box_convert(b, i, o),
                                          lambda b, i=_in, o=_out: TV.box_convert(b, i, o), [boxes(5)])

test_matches_torchvision, test_noncontiguous, test_gradcheck = case_table_tests(CASES)


def test_remove_small_boxes_matches_torchvision():
    b = boxes(40) * R.uniform(0.1, 1, (40, 1))
    for min_size in (0.0, 1.5, 4.0, 100.0):
        keep = ops.remove_small_boxes(mc.tensor(b), min_size)
        assert keep.dtype == mc.int64
        numpy.testing.assert_array_equal(keep.numpy(), TV.remove_small_boxes(torch.from_numpy(b), min_size).numpy())


def test_degenerate_boxes_give_torchvisions_numbers():
    """x2 < x1 (a negative width) is not refused by torchvision: the area
    is negative and the IoU whatever the formula gives; so here."""
    b = numpy.array([[5.0, 5.0, 2.0, 9.0], [0.0, 0.0, 4.0, 4.0], [3.0, 3.0, 3.0, 3.0]])
    numpy.testing.assert_array_equal(ops.box_area(mc.tensor(b)).numpy(), TV.box_area(torch.from_numpy(b)).numpy())
    for name in ("box_iou", "generalized_box_iou"):
        with numpy.errstate(invalid="ignore", divide="ignore"):   # 0 / 0 = nan and x / 0 = inf, as in torch
            mine = getattr(ops, name)(mc.tensor(b), mc.tensor(b)).numpy()
        numpy.testing.assert_array_equal(mine, getattr(TV, name)(torch.from_numpy(b), torch.from_numpy(b)).numpy())


@pytest.mark.parametrize("n,m", [(0, 3), (3, 0), (0, 0)])
def test_empty_box_sets_give_empty_tables(n, m):
    a, b = numpy.zeros((n, 4)), boxes(m)[:m]
    for name in ("box_iou", "generalized_box_iou"):
        out = getattr(ops, name)(mc.tensor(a), mc.tensor(b))
        assert out.shape == (n, m)
    assert ops.box_area(mc.tensor(a)).shape == (n,)
    assert ops.remove_small_boxes(mc.tensor(a), 1.0).shape == (0,)
    assert ops.box_convert(mc.tensor(a), "xyxy", "cxcywh").shape == (n, 4)


def test_float32_in_float32_out():
    check_parity(ops.box_iou, TV.box_iou, [boxes(5), boxes(4)], dtype=numpy.float32)
    out = ops.box_iou(mc.tensor(boxes(2), dtype=mc.float32), mc.tensor(boxes(3), dtype=mc.float32))
    assert out.dtype == mc.float32


def test_bad_input_is_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"boxes1 must have shape \(\.\.\., 4\), got \(3, 5\)"):
        ops.box_iou(mc.zeros(3, 5), mc.zeros(2, 4))
    with pytest.raises(ValueError, match=r"same leading dims, got \(2, 3, 4\) and \(3, 2, 4\)"):
        ops.box_iou(mc.zeros(2, 3, 4), mc.zeros(3, 2, 4))
    with pytest.raises(ValueError, match="in_fmt must be one of"):
        ops.box_convert(mc.zeros(2, 4), "xywhr", "xyxy")
    with pytest.raises(ValueError, match="fmt must be one of"):
        ops.box_area(mc.zeros(2, 4), fmt="yxyx")
    with pytest.raises(TypeError, match="boxes must be a Tensor"):
        ops.box_area(numpy.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"size must be \(height, width\)"):
        ops.clip_boxes_to_image(mc.zeros(2, 4), 10)


def test_integer_boxes_follow_torchvisions_dtypes():
    a, b = R.integers(0, 20, (5, 4)), R.integers(0, 20, (3, 4))
    a[:, 2:] += a[:, :2] + 1
    b[:, 2:] += b[:, :2] + 1
    for name, args in (("box_area", (a,)), ("box_iou", (a, b)), ("generalized_box_iou", (a, b))):
        mine = getattr(ops, name)(*map(mc.tensor, args))
        expected = getattr(TV, name)(*map(torch.from_numpy, args))
        assert str(mine.dtype) == str(expected.dtype).replace("torch.", "")
        numpy.testing.assert_allclose(mine.numpy(), expected.numpy(), rtol=1e-6)
