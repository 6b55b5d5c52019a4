"""Porting a PyTorch training script: the same source text runs with
`import torch` and with `import minicnn as torch`, from the same initial
weights, and gives the same loss at every step and the same final
weights (float64)."""
import numpy
import pytest
import torch as real_torch
from sklearn.datasets import load_digits

SCRIPT = '''
{import_line}
nn = torch.nn
F = torch.nn.functional


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.PReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(6 * 4 * 4, 32)
        self.drop = nn.Identity()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.act(self.bn(self.conv(x))))
        self.features = x.flatten(1)
        return self.fc2(self.drop(F.relu(self.fc1(self.features))))


def train(initial, images, labels, steps):
    model = Net().double()
    model.load_state_dict({{name: torch.tensor(value) for name, value in initial.items()}})
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1)
    seen = []
    handle = model.conv.weight.register_hook(lambda g: seen.append(float(g.abs().sum())))
    pre = model.fc2.register_forward_pre_hook(lambda module, args: (args[0] * 1.0,))
    losses, feature_norms = [], []
    for step in range(steps):
        x = torch.tensor(images[step % 3])
        y = torch.tensor(labels[step % 3])
        out = model(x)
        loss = loss_fn(out, y) + 0.01 * F.mse_loss(out.softmax(1), F.one_hot(y, 10).double())
        (g_features,) = torch.autograd.grad(loss, model.features, create_graph=True)
        penalty = (g_features * g_features).sum()            # a gradient penalty: double backward
        feature_norms.append(penalty.item())
        loss = loss + 0.1 * penalty
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.999)                              # a hand-written decay, in place
            model.fc2.bias.add_(0.001)
        scheduler.step(loss.item())
        losses.append(loss.item())
    handle.remove()
    pre.remove()
    final = {{name: value.detach().numpy().copy() for name, value in model.state_dict().items()}}
    return losses, feature_norms, seen, [g["lr"] for g in optimizer.param_groups], final
'''


def _run(import_line, initial, images, labels, steps=8):
    namespace = {}
    exec(compile(SCRIPT.format(import_line=import_line), f"<script: {import_line}>", "exec"), namespace)
    return namespace["train"](initial, images, labels, steps)


@pytest.mark.slow
def test_a_pytorch_training_script_runs_unchanged_but_for_the_import():
    digits = load_digits()
    rng = numpy.random.default_rng(0)
    order = rng.permutation(len(digits.target))[:48]
    images = (digits.images[order] / 16.0).reshape(3, 16, 1, 8, 8)
    labels = digits.target[order].reshape(3, 16)
    real_torch.manual_seed(0)
    namespace = {}
    exec(compile(SCRIPT.format(import_line="import torch"), "<init>", "exec"), namespace)
    initial = {name: value.detach().double().numpy().copy() for name, value in namespace["Net"]().state_dict().items()}
    expected = _run("import torch", initial, images, labels)
    mine = _run("import minicnn as torch", initial, images, labels)
    for what, a, e in zip(("losses", "feature gradient norms", "hook values", "learning rates"), mine[:4], expected[:4]):
        numpy.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-12, err_msg=what)
    assert expected[3][0] < 0.05                                # the scheduler did reduce the lr
    assert set(mine[4]) == set(expected[4])
    for name in expected[4]:
        numpy.testing.assert_allclose(mine[4][name], expected[4][name], rtol=1e-9, atol=1e-12, err_msg=name)
