"""``python -m minicnn COMMAND``: the command-line entry point."""
import argparse
import sys

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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minicnn", description="minicnn command line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = commands.add_parser("demo", help="train a softmax classifier on the digits with raw autograd")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.5)
    p.set_defaults(run=demo)
    p = commands.add_parser("train", help="train a CNN (LeNet-5 on the digits), evaluate it, save a checkpoint")
    add_train_arguments(p)
    p.set_defaults(run=train)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
