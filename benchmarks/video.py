"""The video cases: 3-D pooling and R(2+1)D-18 inference, minicnn against
torch (conventions and timing as in ``cases.py`` and ``run.py``).

    python -m benchmarks.video                  # all threads
    python -m benchmarks.video --threads 1 --repeats 9

* max_pool3d 3x3x3/2 pad 1 on (4, 64, 8, 56, 56), a video network's
  first pool (S3D's stride-2 one), forward and forward + backward; it runs
  as two 2-D pools (``minicnn/functional/pooling.py``).
* max_pool3d 1x3x3/(1, 2, 2) on the same clip: S3D's spatial pools, one
  2-D pool of the frames.
* adaptive_avg_pool3d to 1 on (8, 512, 2, 7, 7): the video ResNets' head.
* r2plus1d_18 inference on one clip of 16 frames of 112x112, eval mode
  under no_grad (torchvision's evaluation size).

Pooling is memory bound: no GFLOP/s. The model's FLOPs are torch's
``FlopCounterMode`` count.
"""

import torch
import torch.nn.functional as TF
import torchvision

import minicnn as mc
import minicnn.nn.functional as F
from benchmarks import inference
from benchmarks.cases import Case, _data, _model_flops, _op_case, _unary_case

POOL_CLIP = (4, 64, 8, 56, 56)
HEAD_FEATURES = (8, 512, 2, 7, 7)
R2PLUS1D_CLIP = (1, 3, 16, 112, 112)


def _r2plus1d_case(case, device):
    """Eval-mode inference of r2plus1d_18, the same weights on both sides."""
    torch.manual_seed(0)
    torch_model = torchvision.models.video.r2plus1d_18().to(device).eval()
    mc_model = mc.models.video.r2plus1d_18()
    mc_model.load_state_dict({k: v.cpu() for k, v in torch_model.state_dict().items()})
    mc_model.to(device).eval()
    with torch.no_grad():
        case.flops = _model_flops(torch_model, torch.tensor(_data(*R2PLUS1D_CLIP), device=device), backward=False)
    return _op_case([_data(*R2PLUS1D_CLIP)], mc_model, torch_model, False, device)   # no_grad forwards


def video_cases(device="cpu"):
    """The 3-D pools (forward, forward + backward) and r2plus1d_18 inference."""
    clip = "x".join(map(str, POOL_CLIP))
    cases = []
    for backward in (False, True):
        suffix = "fwd+bwd" if backward else "fwd"
        cases += [
            Case("pool3d", f"max_pool3d 3x3x3/2 {clip} {suffix}",
                 _unary_case(POOL_CLIP, lambda x: F.max_pool3d(x, 3, 2, 1),
                             lambda x: TF.max_pool3d(x, 3, 2, 1), backward, device)),
            Case("pool3d", f"max_pool3d 1x3x3/1x2x2 {clip} {suffix}",
                 _unary_case(POOL_CLIP, lambda x: F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
                             lambda x: TF.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1)), backward, device)),
            Case("pool3d", f"adaptive_avg_pool3d {'x'.join(map(str, HEAD_FEATURES))} -> 1 {suffix}",
                 _unary_case(HEAD_FEATURES, lambda x: F.adaptive_avg_pool3d(x, 1),
                             lambda x: TF.adaptive_avg_pool3d(x, 1), backward, device)),
        ]
    model = Case("inference", f"r2plus1d_18 {'x'.join(map(str, R2PLUS1D_CLIP))}", None, repeats=5)
    model.build = lambda: _r2plus1d_case(model, device)
    cases.append(model)
    return cases


def main(argv=None):
    parser = inference.parser(__doc__.split("\n\n")[0], warmup=2, repeats=9)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    return inference.run_and_print(video_cases(args.device), args, args.device)


if __name__ == "__main__":
    raise SystemExit(main())
