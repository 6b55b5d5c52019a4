"""``python -m minicnn COMMAND``: the command-line entry point.

    python -m minicnn demo                  # softmax regression with raw autograd
    python -m minicnn train                 # LeNet-5 on the digits
    python -m minicnn train --model resnet18 --dataset path/to/images   # a zoo model on an image folder
    python -m minicnn models [--filter s]   # the model zoo with parameter counts
    python -m minicnn summary resnet50      # mc.summary's table of one model
    python -m minicnn classify IMAGE --model resnet50 --weights FILE
    python -m minicnn segment IMAGE --model fcn8s_small --weights FILE --out overlay.png
    python -m minicnn detect IMAGE --model yolo_small --weights FILE --out boxes.png
    python -m minicnn graph lenet5 --out lenet5.svg   # the autograd graph of one training step
    python -m minicnn quantize resnet18 [--checkpoint FILE]   # int8 vs float32: size, speed, accuracy
"""
import argparse
import sys

from .classify import add_arguments as add_classify_arguments, main as classify
from .detect import add_arguments as add_detect_arguments, main as detect
from .quantize_report import add_arguments as add_quantize_arguments, main as quantize
from .segment import add_arguments as add_segment_arguments, main as segment
from .train import add_arguments as add_train_arguments, main as train


def demo(args):
    """Fit a softmax classifier to scikit-learn's handwritten digits with
    nothing but Tensors, autograd and a hand-written SGD step."""
    from sklearn.datasets import load_digits
    import minicnn as mc
    import minicnn.nn.functional as F

    mc.manual_seed(0)
    digits = load_digits()
    x = mc.tensor(digits.data / 16.0, dtype=mc.float32)
    y = mc.tensor(digits.target)
    n_train = 1400
    w = (mc.randn(64, 10) * 0.01).requires_grad_()
    b = mc.zeros(10, requires_grad=True)
    for step in range(args.steps):
        loss = F.cross_entropy(x[:n_train] @ w + b, y[:n_train])
        w.grad = b.grad = None
        loss.backward()
        with mc.no_grad():
            w.data -= args.lr * w.grad.data
            b.data -= args.lr * b.grad.data
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    with mc.no_grad():
        predicted = (x[n_train:] @ w + b).argmax(1)
    accuracy = (predicted == y[n_train:]).numpy().mean()
    print(f"test accuracy {accuracy:.3f} on {len(y) - n_train} held-out digits")
    return 0


#: The input a zoo model is summarised at by default, (C, H, W): the crop
#: size torchvision evaluates its pretrained weights at (and counts its
#: table's GFLOPS at), the designed size for LeNet-5 and Xception, and
#: 3 x 224 x 224 for the models not listed.
INPUT_SIZES = {
    "lenet5": (1, 32, 32),
    "inception_v3": (3, 299, 299), "xception": (3, 299, 299),
    "efficientnet_b1": (3, 240, 240), "efficientnet_b2": (3, 288, 288), "efficientnet_b3": (3, 300, 300),
    "efficientnet_b4": (3, 380, 380), "efficientnet_b5": (3, 456, 456), "efficientnet_b6": (3, 528, 528),
    "efficientnet_b7": (3, 600, 600),
    "efficientnet_v2_s": (3, 384, 384), "efficientnet_v2_m": (3, 480, 480), "efficientnet_v2_l": (3, 480, 480),
    "regnet_y_128gf": (3, 384, 384),
    # torchvision evaluates (and counts the GFLOPS of) its segmentation weights at 520 x 520.
    **{name: (3, 520, 520) for name in ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
                                        "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large")},
    "fcn8s_small": (3, 64, 64),
    "yolo_small": (1, 64, 64),          # a digit scene
    # Video models: (C, T, H, W) clips of 16 frames.
    "r3d_18": (3, 16, 112, 112), "mc3_18": (3, 16, 112, 112), "r2plus1d_18": (3, 16, 112, 112),
    "s3d": (3, 16, 224, 224),
}


def list_models(args):
    """Print every model of the zoo with its parameter count. The models
    are built without initialising their weights (``no_init``): counting
    regnet_y_128gf's 645 million parameters then takes milliseconds."""
    from . import models
    from .nn.skip_init import no_init

    names = [name for name in models.list_models() if args.filter is None or args.filter in name]
    if not names:
        print(f"no model name contains {args.filter!r}; `python -m minicnn models` lists them all")
        return 1
    width = max(len(name) for name in names)
    print(f"{'model':<{width}}  {'parameters':>13}")
    for name in names:
        with no_init():
            model = models.get_model(name)
        count = sum(p.data.size for p in model.parameters())
        print(f"{name:<{width}}  {count:>13,}  ({count / 1e6:.1f}M)")
    print(f"{len(names)} models")
    return 0


def summarize(args):
    """Print ``mc.summary``'s table of one zoo model (built without
    initialising its weights: the counts do not depend on them)."""
    from . import models
    from .nn.skip_init import no_init
    from .summary import summary

    if args.name not in models.list_models():
        print(f"unknown model {args.name!r}; `python -m minicnn models` lists them", file=sys.stderr)
        return 1
    with no_init():
        model = models.get_model(args.name)
    input_size = tuple(args.input_size) if args.input_size else INPUT_SIZES.get(args.name, (3, 224, 224))
    try:
        result = summary(model, input_size, args.batch_size, depth=args.depth,
                         training_memory=not args.no_training_memory)
    except ValueError as e:             # a bad size, or an input the model does not take
        print(f"summary: {e}", file=sys.stderr)
        return 1
    print(result)
    return 0


def draw_graph(args):
    """Write the autograd graph (``mc.viz.save_graph``) of one training
    step of a zoo model: its loss on a batch of zeros with label 0, in
    training mode, the graph its backward would run through."""
    from . import models
    from .functional import cross_entropy
    from .creation import zeros
    from .dtypes import int64
    from .random import manual_seed
    from .viz import save_graph

    if args.name not in models.list_models():
        print(f"unknown model {args.name!r}; `python -m minicnn models` lists them", file=sys.stderr)
        return 1
    manual_seed(0)
    model = models.get_model(args.name)
    model.train()
    input_size = tuple(args.input_size) if args.input_size else INPUT_SIZES.get(args.name, (3, 224, 224))
    out = args.out or f"{args.name}.dot"
    try:
        logits = model(zeros(args.batch_size, *input_size))
        loss = cross_entropy(logits, zeros(args.batch_size, dtype=int64))
        save_graph(loss, out, params=dict(model.named_parameters()), collapse=args.collapse,
                   grad_norms=args.grad_norms)
    except (ValueError, RuntimeError) as e:     # a bad size; no `dot` program for .svg / .png
        print(f"graph: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minicnn", description="minicnn command line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = commands.add_parser("demo", help="train a softmax classifier on the digits with raw autograd")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.5)
    p.set_defaults(run=demo)
    p = commands.add_parser("train", help="train a zoo model (LeNet-5 on the digits by default, or an "
                                                 "image folder), evaluate it, save a checkpoint")
    add_train_arguments(p)
    p.set_defaults(run=train)
    p = commands.add_parser("models", help="list the model zoo with parameter counts")
    p.add_argument("--filter", metavar="TEXT", help="only the models whose name contains TEXT")
    p.set_defaults(run=list_models)
    p = commands.add_parser("summary", help="print a model's layers, parameters, multiply-adds and memory")
    p.add_argument("name", help="a model of the zoo (see `python -m minicnn models`)")
    p.add_argument("--input-size", type=int, nargs="+", metavar="N",
                   help="one sample's shape without the batch dim, e.g. 3 224 224 "
                        "(default: the size torchvision evaluates the model at)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--depth", type=int, default=3, help="levels of nested modules to show (default 3)")
    p.add_argument("--no-training-memory", action="store_true",
                   help="skip the training-mode forward that measures the training memory")
    p.set_defaults(run=summarize)
    p = commands.add_parser("classify", help="classify images with pretrained ImageNet weights")
    add_classify_arguments(p)
    p.set_defaults(run=classify)
    p = commands.add_parser("segment", help="paint the digits a segmentation model finds in an image (an overlay PNG)")
    add_segment_arguments(p)
    p.set_defaults(run=segment)
    p = commands.add_parser("detect", help="draw the boxes and labels a detector finds in an image (a PNG)")
    add_detect_arguments(p)
    p.set_defaults(run=detect)
    p = commands.add_parser("graph", help="draw the autograd graph of one training step of a zoo model")
    p.add_argument("name", help="a model of the zoo (see `python -m minicnn models`)")
    p.add_argument("--out", metavar="FILE",
                   help="NAME.dot (default), or .svg / .png to render with Graphviz's dot program")
    p.add_argument("--input-size", type=int, nargs="+", metavar="N",
                   help="one sample's shape without the batch dim, e.g. 3 224 224 "
                        "(default: the size torchvision evaluates the model at)")
    p.add_argument("--batch-size", type=int, default=2, help="default 2 (batch norm needs more than one value)")
    p.add_argument("--collapse", action="store_true", help="one box per block of the model instead of one per op")
    p.add_argument("--grad-norms", action="store_true", help="label each edge with its gradient's norm")
    p.set_defaults(run=draw_graph)
    p = commands.add_parser("quantize", help="quantize a model to int8 and report weight size, speed and (with a "
                                             "checkpoint) accuracy against float32")
    add_quantize_arguments(p)
    p.set_defaults(run=quantize)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
