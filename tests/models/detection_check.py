"""What the detector tests (test_detection_one_stage.py,
test_detection_rcnn.py) share: a minicnn model and a torchvision one with
the same weights in float64, two small images of different sizes and
their targets, and the comparisons of detections (eval mode), of the loss
dict and of every parameter's gradient (training mode), and of the
refusal of bad images and targets."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn.nn.skip_init import no_init
from zoo_check import assert_relative

IMAGES = [(3, 90, 120), (3, 110, 100)]
TARGETS = [{"boxes": [[10.0, 20.0, 60.0, 70.0], [30.0, 5.0, 80.0, 50.0]], "labels": [1, 3]},
           {"boxes": [[5.0, 5.0, 95.0, 100.0]], "labels": [2]}]


def pair(name, kaiming=False, **kwargs):
    """(minicnn model, torchvision model) in float64 with torchvision's
    seeded random weights (the same state_dict keys and shapes asserted);
    ``kaiming`` redraws every conv weight with He's normal init first
    (SSDlite's N(0, 0.03) weights shrink the features to 1e-14 by the last
    map: every score ties, and tie order is arbitrary)."""
    torch.manual_seed(0)
    tv = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs)
    if kaiming:
        with torch.no_grad():
            for module in tv.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5)
    with no_init():
        mine = mc.models.get_model(name, **kwargs)
    assert [(k, tuple(v.shape)) for k, v in mine.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in tv.state_dict().items()]
    mine.load_state_dict(tv.state_dict())
    return mine.double(), tv.double()


def sample_images():
    """IMAGES' shapes filled with uniform [0, 1) float64 numbers, seeded."""
    rng = numpy.random.default_rng(0)
    return [rng.random(shape) for shape in IMAGES]


def target_pair(targets=TARGETS, extra=None):
    """(minicnn targets, torch targets) from ``targets`` (lists of boxes and
    labels; an image may have none), each dict with ``extra(i)``'s arrays
    added (masks, keypoints)."""
    ours, theirs = [], []
    for i, t in enumerate(targets):
        arrays = {"boxes": numpy.asarray(t["boxes"], dtype=numpy.float64).reshape(-1, 4),
                  "labels": numpy.asarray(t["labels"], dtype=numpy.int64), **(extra(i) if extra else {})}
        ours.append({k: mc.from_numpy(v.copy()) for k, v in arrays.items()})
        theirs.append({k: torch.from_numpy(v.copy()) for k, v in arrays.items()})
    return ours, theirs


def check_detections(mine, tv, images):
    """Eval-mode detections of both models on ``images``: the same keys,
    count and labels per image, boxes, scores (and masks, keypoints) to
    1e-7 relative. Returns the number of detections per image."""
    mine.eval()
    tv.eval()
    with mc.no_grad():
        ours = mine([mc.from_numpy(i.copy()) for i in images])
    with torch.no_grad():
        theirs = tv([torch.from_numpy(i) for i in images])
    counts = []
    for a, b in zip(ours, theirs):
        assert sorted(a) == sorted(b)
        assert len(a["boxes"]) == len(b["boxes"])
        counts.append(len(b["boxes"]))
        if not len(b["boxes"]):
            continue
        numpy.testing.assert_array_equal(a["labels"].numpy(), b["labels"].numpy())
        for key in ("boxes", "scores", "masks", "keypoints_scores"):
            if key in b:
                assert_relative(a[key].numpy(), b[key].numpy(), 1e-7, key)
        if "keypoints" in b:
            assert a["keypoints"].dtype == numpy.float32
            numpy.testing.assert_allclose(a["keypoints"].numpy(), b["keypoints"].numpy(), rtol=1e-6)
    return counts


def check_training(mine, tv, images, targets=TARGETS, extra=None, gradients=True, grad_rtol=1e-8):
    """Training-mode loss dicts of both models on ``images`` and
    ``targets`` (``target_pair``): the same keys, every loss positive and
    equal to 1e-8 relative (1e-7 for a float32 one); with ``gradients``,
    every parameter's gradient of their sum to ``grad_rtol``."""
    mine.train()
    tv.train()
    for p in list(mine.parameters()) + list(tv.parameters()):
        p.grad = None
    ours_t, theirs_t = target_pair(targets, extra)
    ours = mine([mc.from_numpy(i.copy()) for i in images], ours_t)
    theirs = tv([torch.from_numpy(i) for i in images], theirs_t)
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert float(theirs[key].detach()) > 0, key
        rtol = 1e-7 if theirs[key].dtype == torch.float32 else 1e-8
        assert_relative(ours[key].detach().numpy(), theirs[key].detach().double().numpy(), rtol, f"loss {key}")
    if not gradients:
        return
    sum(ours.values()).backward()
    sum(theirs.values()).backward()
    tv_params = dict(tv.named_parameters())
    floor = 1e-6 * max(float(p.grad.abs().max()) for p in tv_params.values() if p.grad is not None)
    for name, p in mine.named_parameters():
        if tv_params[name].grad is None:
            assert p.grad is None or not p.grad.numpy().any(), name
            continue
        assert_relative(p.grad.numpy(), tv_params[name].grad.numpy(), grad_rtol, f"gradient of {name}", floor=floor)


def check_bad_images_and_targets(model):
    """``model`` refuses images that are not a list of (C, H, W) Tensors
    with pixels and, in training, missing, malformed or miscounted
    targets, naming the problem."""
    model.eval()
    with pytest.raises(ValueError, match="3d tensors"):
        model([mc.zeros(1, 3, 32, 32)])
    with pytest.raises(TypeError, match="list"):
        model(mc.zeros(3, 32, 32))
    with pytest.raises(ValueError, match=r"images\[1\] has no pixels: shape \(3, 0, 20\)"):
        model([mc.zeros(3, 32, 32), mc.zeros(3, 0, 20)])             # torchvision: ZeroDivisionError
    model.train()
    image = [mc.zeros(3, 32, 32)]
    with pytest.raises(ValueError, match="targets should not be None"):
        model(image)
    with pytest.raises(ValueError, match="missing the key 'labels'"):
        model(image, [{"boxes": mc.tensor([[1.0, 1.0, 5.0, 5.0]])}])
    with pytest.raises(ValueError, match="missing the key 'boxes'"):
        model(image, [{"labels": mc.tensor([1])}])
    # Stricter than torchvision, which zips the lists and indexes the labels.
    with pytest.raises(ValueError, match=r"list of 1 dicts \(one per image\), got list of length 2"):
        model(image, [{"boxes": mc.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": mc.tensor([1])}] * 2)
    with pytest.raises(ValueError, match=r"\['labels'\] must have shape \(1,\) for 1 boxes, got \(2,\)"):
        model(image, [{"boxes": mc.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": mc.tensor([1, 2])}])
    with pytest.raises(TypeError, match="integer"):
        model(image, [{"boxes": mc.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": mc.tensor([1.0])}])
    # torchvision: an IndexError, or a negative label wrapping around.
    for label in (-1, 10 ** 6):
        with pytest.raises(ValueError, match=r"\['labels'\] must lie in \[0, \d+\) .* got values in \[%d, %d\]"
                           % (label, label)):
            model(image, [{"boxes": mc.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": mc.tensor([label])}])
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        model(image, [{"boxes": mc.tensor([1.0, 1.0, 5.0, 5.0]), "labels": mc.tensor([1])}])
    with pytest.raises(ValueError, match="positive height and width.*index 0"):
        model(image, [{"boxes": mc.tensor([[6.0, 1.0, 5.0, 5.0]]), "labels": mc.tensor([1])}])
