"""The video classifiers against torchvision: R3D-18, MC3-18, R(2+1)D-18
and S3D, from the same weights. Eval-mode logits and feature maps on
small clips (float64 to 1e-10, float32 to 1e-4 relative), with batch
norms given non-trivial statistics so that eval mode really uses them;
R(2+1)D-18 in training mode (every parameter gradient and running
statistic, float64); structure, registry and bad input.

S3D's head needs (2, 7, 7) features, so 224 x 224 frames: its features
and head are compared on small inputs, the whole model once (slow)."""
import numpy
import pytest
import torch
import torchvision

import minicnn as mc
from minicnn.nn.skip_init import no_init
from torch.utils.flop_counter import FlopCounterMode
from zoo_check import assert_relative, build_pair, check_eval, check_train, check_weights_refused

RESNETS = ["r3d_18", "mc3_18", "r2plus1d_18"]
CLIP = (1, 3, 2, 16, 16)


def randomized_pair(name, seed=0, **kwargs):
    """``build_pair(name)`` with torchvision's BatchNorm3d weights, biases
    and running statistics drawn away from 1 and 0 (fresh statistics make
    eval-mode batch norm the identity), then copied into minicnn's."""
    mc_model, tv_model = build_pair(name, seed, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in tv_model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0.0, 0.1, generator=generator)
                m.running_mean.normal_(0.0, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
    mc_model.load_state_dict(tv_model.state_dict())
    return mc_model, tv_model


@pytest.mark.parametrize("name", RESNETS)
def test_video_resnet_eval_parity(name):
    mc_model, tv_model = randomized_pair(name)
    assert repr(mc_model) == repr(tv_model)
    layers = ["stem", "layer1.0.conv1", "layer2", "layer4.1"]
    check_eval(mc_model, tv_model, CLIP, numpy.float64, layers=layers, rtol=1e-10)
    check_eval(mc_model, tv_model, CLIP, numpy.float32, layers=layers)


@pytest.mark.slow
def test_r2plus1d_18_train_gradients():
    mc_model, tv_model = randomized_pair("r2plus1d_18")
    check_train(mc_model, tv_model, (2, 3, 2, 32, 32))


def test_bottleneck_video_resnet_matches_torchvision():
    """No builder uses VideoResNet's Bottleneck; it is built as
    torchvision builds it, down to the state_dict and the forward."""
    from torchvision.models.video import resnet as tv_resnet
    from minicnn.models.video import resnet as mc_resnet

    def build(lib):
        return lib.VideoResNet(lib.Bottleneck, [lib.Conv3DSimple, lib.Conv3DNoTemporal, lib.Conv2Plus1D,
                                                lib.Conv3DNoTemporal], [1, 1, 1, 1], lib.R2Plus1dStem,
                               num_classes=7)
    torch.manual_seed(0)
    tv_model = build(tv_resnet)
    mc_model = build(mc_resnet)
    assert repr(mc_model) == repr(tv_model)
    mc_model.load_state_dict(tv_model.state_dict())
    check_eval(mc_model, tv_model, (1, 3, 2, 16, 16), numpy.float64, rtol=1e-10)


def _s3d_pair():
    mc_model, tv_model = randomized_pair("s3d", num_classes=10)
    assert repr(mc_model) == repr(tv_model)
    return mc_model.double().eval(), tv_model.double().eval()


def test_s3d_features_and_head_parity():
    mc_model, tv_model = _s3d_pair()
    x = numpy.random.default_rng(0).standard_normal((1, 3, 8, 32, 32))
    with mc.no_grad():
        mine = mc_model.features(mc.from_numpy(x.copy())).numpy()
    with torch.no_grad():
        theirs = tv_model.features(torch.from_numpy(x)).numpy()
    assert_relative(mine, theirs, 1e-10, "S3D features")
    h = numpy.random.default_rng(1).standard_normal((2, 1024, 2, 7, 8))
    with mc.no_grad():
        mine = mc_model.classifier(mc_model.avgpool(mc.from_numpy(h.copy()))).mean(dim=(2, 3, 4)).numpy()
    with torch.no_grad():
        theirs = tv_model.classifier(tv_model.avgpool(torch.from_numpy(h))).mean(dim=(2, 3, 4)).numpy()
    assert_relative(mine, theirs, 1e-10, "S3D head")


@pytest.mark.slow
def test_s3d_whole_model_float32_at_its_smallest_clip():
    mc_model, tv_model = randomized_pair("s3d", num_classes=10)
    check_eval(mc_model, tv_model, (1, 3, 13, 224, 224), numpy.float32, layers=["features.6", "features.15"])


def test_registered_under_torchvisions_names():
    names = mc.models.list_models()
    for name in RESNETS + ["s3d"]:
        assert name in names and name in torchvision.models.list_models(module=torchvision.models.video)
    model = mc.models.video.r3d_18(num_classes=5)
    assert isinstance(model, mc.models.video.VideoResNet) and model.fc.out_features == 5
    assert isinstance(mc.models.get_model("s3d", dropout=0.5), mc.models.video.S3D)


@pytest.mark.parametrize("builder", [mc.models.video.r3d_18, mc.models.video.s3d])
def test_weights_refused(builder):
    check_weights_refused(builder)


def test_initialisation_is_torchvisions():
    """Convs kaiming_normal_(fan_out), BatchNorm 1 and 0, Linear N(0, 0.01)."""
    model = mc.models.video.mc3_18()
    w = model.layer3[0].conv1[0].weight.detach().numpy()             # 128 -> 256, 1x3x3: fan_out 256 * 9
    assert abs(w.std() / (2 / (256 * 9)) ** 0.5 - 1) < 0.05
    assert abs(model.fc.weight.detach().numpy().std() / 0.01 - 1) < 0.05
    assert (model.layer1[0].conv2[1].weight.detach().numpy() == 1).all()
    zeroed = mc.models.video.VideoResNet(mc.models.video.resnet.Bottleneck, [mc.models.video.resnet.Conv3DSimple] * 4,
                                         [1, 1, 1, 1], mc.models.video.resnet.BasicStem, zero_init_residual=True)
    assert (zeroed.layer2[0].conv3[1].weight.detach().numpy() == 0).all()
    assert (zeroed.layer2[0].conv2[1].weight.detach().numpy() == 1).all()


@pytest.mark.parametrize("builder", [mc.models.video.r2plus1d_18, mc.models.video.s3d])
def test_images_are_refused_with_the_shape(builder):
    with pytest.raises(ValueError, match=r"clips of shape \(N, 3, T, H, W\), got \(1, 3, 32, 32\)"):
        builder()(mc.zeros(1, 3, 32, 32))


# torchvision's table: parameters (millions) and "GFLOPS" (billions of
# multiply-adds) at its evaluation clip: 16 frames of 112 x 112 for the
# ResNets, of 224 x 224 for S3D.
VIDEO_TABLE = [("r3d_18", (3, 16, 112, 112), "33.4", "40.70"), ("mc3_18", (3, 16, 112, 112), "11.7", "43.34"),
               ("r2plus1d_18", (3, 16, 112, 112), "31.5", "40.52"), ("s3d", (3, 16, 224, 224), "8.3", "17.98")]


@pytest.mark.slow
@pytest.mark.parametrize("name,size,params,gflops", VIDEO_TABLE, ids=[row[0] for row in VIDEO_TABLE])
def test_summary_reproduces_torchvisions_table(name, size, params, gflops):
    with no_init():
        model = mc.models.get_model(name)
    s = mc.summary(model, size, training_memory=False)
    assert (f"{s.total_params / 1e6:.1f}", f"{s.total_mult_adds / 1e9:.2f}") == (params, gflops)
    # Exactly, against torchvision's model on the meta device and torch's count (2 FLOPs a multiply-add).
    with torch.device("meta"):
        theirs = torchvision.models.get_model(name).eval()
        x = torch.empty((1,) + size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        theirs(x)
    assert (s.total_params, s.total_mult_adds) == (sum(p.numel() for p in theirs.parameters()),
                                                   counter.get_total_flops() // 2)
