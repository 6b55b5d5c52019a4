"""Build the example notebooks in this folder from the Python source below.

The notebooks are generated so that a change to one is a readable diff of
this file, not of JSON. Run ``python examples/make_notebooks.py`` after an
edit and commit both; the notebooks are stored without outputs (and with
fixed cell ids, so regenerating an unchanged notebook changes no byte).
``tests/test_examples.py`` checks that the committed notebooks are what
this script writes, and executes each of them top to bottom.

Each notebook is a list of cells: ``md(text)`` for an explanation,
``code(text)`` for a code cell.
"""
import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))


def md(text):
    return ("markdown", text.strip("\n"))


def code(text):
    return ("code", text.strip("\n"))


AUTOGRAD = [
    md("""
# 1. Autograd from scratch

A neural network is trained by gradient descent, and the gradients come
from *reverse-mode automatic differentiation*: while the forward pass
runs, every operation is recorded in a graph; `backward()` then walks that
graph from the output back to the inputs, applying the chain rule once per
node. This notebook computes one small gradient by hand, checks that
`backward()` finds the same numbers, checks both against finite
differences with `mc.gradcheck`, and draws the graph that `backward()`
walked.
"""),
    code("""
import shutil

import numpy
import minicnn as mc
import minicnn.nn.functional as F
import minicnn.viz
"""),
    md("""
## Tensors

A `mc.Tensor` wraps a NumPy array (`.data`). `requires_grad=True` marks a
*leaf* whose gradient we want: every result computed from it remembers the
operation that made it in `.grad_fn`. We work in float64 here so that the
finite differences of `gradcheck` later are accurate.
"""),
    code("""
x = mc.tensor([1.0, -2.0, 0.5], dtype=mc.float64)           # an input: no gradient wanted
w = mc.tensor([0.3, 0.1, -0.4], dtype=mc.float64, requires_grad=True)
b = mc.tensor(0.2, dtype=mc.float64, requires_grad=True)
target = 0.5
x.requires_grad, w.requires_grad, w.grad_fn
"""),
    md("""
## A tiny computation: one neuron and its squared error

$$z = w \\cdot x + b, \\qquad y = \\tanh z, \\qquad L = (y - t)^2$$

Each intermediate result has a `grad_fn`: the node of the graph that will
send its gradient backwards.
"""),
    code("""
z = (w * x).sum() + b
y = z.tanh()
loss = (y - target) ** 2
print("z =", z.item(), " y =", y.item(), " loss =", loss.item())
print("loss.grad_fn:", loss.grad_fn, " y.grad_fn:", y.grad_fn)
"""),
    md("""
## Backward by hand

The chain rule, one factor per operation, from the output back:

$$\\frac{\\partial L}{\\partial y} = 2(y - t), \\qquad
\\frac{\\partial y}{\\partial z} = 1 - \\tanh^2 z = 1 - y^2, \\qquad
\\frac{\\partial z}{\\partial w} = x, \\qquad
\\frac{\\partial z}{\\partial b} = 1.$$

Multiplying the factors along the path from $L$ to each leaf:
"""),
    code("""
dL_dy = 2 * (y.item() - target)
dL_dz = dL_dy * (1 - y.item() ** 2)
grad_w_by_hand = dL_dz * x.numpy()
grad_b_by_hand = dL_dz
grad_w_by_hand, grad_b_by_hand
"""),
    md("""
## Backward by the engine

`loss.backward()` does the same walk: it starts with
$\\partial L / \\partial L = 1$, runs each node's `backward` (which
multiplies the incoming gradient by that node's local derivative) in
reverse topological order, and adds what reaches a leaf into its `.grad`.
"""),
    code("""
loss.backward()
print("w.grad:", w.grad.numpy(), " by hand:", grad_w_by_hand)
print("b.grad:", b.grad.item(), " by hand:", grad_b_by_hand)
assert numpy.allclose(w.grad.numpy(), grad_w_by_hand) and numpy.isclose(b.grad.item(), grad_b_by_hand)
"""),
    md("""
## Walking the graph yourself

Every node keeps `edges`, one per input of its operation: either the
input's own creator node with the index of that output, as a pair
`(node, index)`, or the leaf Tensor itself, or `None` for an input that
needs no gradient. That is all the engine needs. Here is the graph of a
fresh forward pass (`backward()` frees the graph it walked), printed
depth-first:
"""),
    code("""
loss = (((w * x).sum() + b).tanh() - target) ** 2

def show(edge, depth=0):
    if edge is None:
        return
    if isinstance(edge, mc.Tensor):
        name = "w" if edge is w else "b" if edge is b else "leaf"
        print("    " * depth + f"leaf {name} {tuple(edge.shape)}")
        return
    node, _ = edge
    print("    " * depth + repr(node))
    for child in node.edges:
        show(child, depth + 1)

show((loss.grad_fn, 0))
"""),
    md("""
## Checking a gradient numerically

A backward can be wrong in ways that still train (a missing factor, a
transposed matrix). `mc.gradcheck(fn, inputs)` compares the backward of
`fn` with central differences
$(f(x + \\varepsilon) - f(x - \\varepsilon)) / 2\\varepsilon$ along random
directions, and returns `True` or raises with the worst element. It wants
float64 inputs: in float32 the rounding error of $f$ swamps the
difference.
"""),
    code("""
def neuron_loss(w, b):
    return (((w * x).sum() + b).tanh() - target) ** 2

mc.gradcheck(neuron_loss, (w, b))
"""),
    md("""
## The graph, drawn

`mc.viz.graph(output, params)` draws the same graph with Graphviz: one
box per operation with its output shape and the bytes it saved for
backward, and the leaves named after `params`. The DOT source is always
available; turning it into a picture needs Graphviz's `dot` program, so
we show the SVG when `dot` is installed and the DOT text otherwise.
"""),
    code("""
from IPython.display import SVG, display

graph = mc.viz.graph(neuron_loss(w, b), params={"w": w, "b": b})
if shutil.which("dot"):
    display(SVG(graph.pipe(format="svg", encoding="utf-8")))
else:
    print(graph.source)
"""),
    md("""
Read the drawing from the bottom up to follow the forward pass, and from
the top down to follow `backward()`. The same call draws a whole model's
training step: try `mc.viz.graph(loss, params=dict(model.named_parameters()))`
after a forward pass of `mc.models.lenet5()`, or
`python -m minicnn graph lenet5 --out lenet5.svg` from a shell.
"""),
]


CONV = [
    md("""
# 2. Convolution as im2col + GEMM

A convolution slides a small kernel over an image and takes a dot product
at every position. Written as loops it is slow; every serious framework
instead copies each window of the image into a column of a matrix
(*im2col*), so that the whole convolution becomes **one matrix product**
(a GEMM). The backward pass is a matrix product too, followed by the
reverse copy (*col2im*), which adds each column back into the pixels it
came from. This notebook takes one tiny convolution through those steps.
"""),
    code("""
import numpy
import minicnn as mc
import minicnn.nn.functional as F
import minicnn.explain
"""),
    md("""
## The steps, explained by `mc.explain.conv2d`

Notation: an input `x` of shape (N, C, H, W), a weight `w` of shape
(O, C, KH, KW), an output of shape (N, O, OH, OW), and L = OH * OW kernel
positions. `mc.explain.conv2d` prints each intermediate matrix with its
shape and checks each step against `F.conv2d` and its gradients.
"""),
    code("""
mc.manual_seed(0)                               # the same numbers on every run
x = mc.randn(1, 2, 4, 4, dtype=mc.float64)      # N=1, C=2, 4x4
w = mc.randn(3, 2, 3, 3, dtype=mc.float64)      # O=3 filters of 2x3x3
steps = mc.explain.conv2d(x, w, padding=1)
"""),
    md("""
It also returns every step's array (NumPy arrays, by the names printed
above), to look at again or to compare with your own computation:
"""),
    code("""
sorted(steps)
"""),
    md("""
## Doing it yourself: `F.unfold` is im2col

`F.unfold(x, kernel_size, padding=...)` returns the columns: shape
(N, C * KH * KW, L). Column `l` holds the 2 * 3 * 3 = 18 pixels under the
window at position `l` (positions row by row), channel first, then kernel
row, then kernel column: the same order as a flattened filter.
"""),
    code("""
cols = F.unfold(x, kernel_size=3, padding=1)
print("cols:", cols.shape)                # (1, 18, 16): 16 positions of a 3x3 window on a padded 4x4
print("the same as explain's cols:", numpy.array_equal(cols.numpy(), steps["cols"]))
cols[0, :, 0].reshape(2, 3, 3)            # the first window: the top-left corner, half of it padding
"""),
    md("""
## The GEMM

Flatten each filter into a row: `w` becomes an (O, C * KH * KW) = (3, 18)
matrix. One matrix product with the columns gives every output value:
row `o`, column `l` is filter `o`'s dot product with window `l`. Reshaping
the L columns to OH x OW is the output image.
"""),
    code("""
w_rows = w.reshape(3, 18)
y = (w_rows @ cols).reshape(1, 3, 4, 4)   # (3, 18) @ (1, 18, 16) -> (1, 3, 16)
print("largest difference from F.conv2d:", (y - F.conv2d(x, w, padding=1)).abs().max().item())
"""),
    md("""
The cost is visible in the shapes: the product does O * (C * KH * KW) * L
multiply-adds per image, and the columns hold every input pixel
KH * KW times over (here 18 * 16 = 288 numbers for a 2 * 4 * 4 = 32-number
image). A stride shrinks L, the number of columns:
"""),
    code("""
print("stride 1:", F.unfold(x, 3, padding=1).shape, " stride 2:", F.unfold(x, 3, padding=1, stride=2).shape)
"""),
    md("""
## Backward: a GEMM, then col2im with `F.fold`

Given the upstream gradient `gy` of the output (one number per output
value, reshaped to (N, O, L)):

* the weight's gradient is `gy @ cols^T`: each filter weight met one input
  pixel per position, so its gradient sums `gy` times that pixel;
* the columns' gradient is `w_rows^T @ gy`, shape (N, C * KH * KW, L);
* the input's gradient is that matrix folded back (*col2im*): `F.fold`
  adds every entry into the pixel `unfold` copied it from. A pixel that
  sat in several windows gets the sum of their gradients.
"""),
    code("""
gy = mc.randn(1, 3, 4, 4, dtype=mc.float64)
gy_rows = gy.reshape(1, 3, 16)
gw = (gy_rows @ cols.transpose(1, 2)).sum(0).reshape(w.shape)
gcols = w_rows.t() @ gy_rows
gx = F.fold(gcols, output_size=(4, 4), kernel_size=3, padding=1)

xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
F.conv2d(xr, wr, padding=1).backward(gy)
print("gx differs by", (gx - xr.grad).abs().max().item(), "; gw differs by", (gw - wr.grad).abs().max().item())
"""),
    md("""
## Why fold is the reverse of unfold

`fold` is the *adjoint* of `unfold`, not its inverse: unfolding copies a
pixel into every window that covers it, so folding adds all those copies
back. Folding the columns of an image of ones counts, for each pixel, how
many 3x3 windows cover it: 9 in the middle, 4 in the corners.
"""),
    code("""
ones = mc.ones(1, 1, 4, 4, dtype=mc.float64)
F.fold(F.unfold(ones, 3, padding=1), output_size=(4, 4), kernel_size=3, padding=1)[0, 0]
"""),
    md("""
`mc.explain.max_pool2d` and `mc.explain.batch_norm` take max pooling's
argmax routing and batch normalization's backward through the same kind
of walk:
"""),
    code("""
_ = mc.explain.max_pool2d(mc.randn(1, 1, 4, 4, dtype=mc.float64), kernel_size=2)
"""),
]


LENET = [
    md("""
# 3. LeNet-5 on the digits: training, filters and feature maps

LeNet-5 (LeCun et al., 1998) is the network that read the postal codes:
two convolution and pooling stages that turn a 32x32 image into 120
features, then two fully connected layers that classify them. We train it
on scikit-learn's 1,797 scanned digits for three epochs (a few seconds on
a laptop CPU) and then look inside: what the first-layer filters look
like, and what each layer makes of one image.
"""),
    code("""
%matplotlib inline
import matplotlib.pyplot as plt
import minicnn as mc
import minicnn.nn.functional as F
import minicnn.viz
from minicnn.utils.data import DataLoader
"""),
    md("""
## The data

`mc.datasets.digits` gives the 8x8 scans resized to 28x28 and padded to
32x32 (how LeNet-5 saw MNIST), pixels in [0, 1], split 80/20 with every
digit in the same proportion on both sides.
"""),
    code("""
train_set = mc.datasets.digits(train=True, resize=28, pad=2)
test_set = mc.datasets.digits(train=False, resize=28, pad=2)
print(len(train_set), "training and", len(test_set), "test images of shape", tuple(train_set[0][0].shape))

fig, axes = plt.subplots(1, 8, figsize=(8, 1.3))
for ax, i in zip(axes, range(8)):
    image, label = test_set[i]
    ax.imshow(image[0].numpy(), cmap="gray")
    ax.set_title(int(label))
    ax.axis("off")
"""),
    md("""
## The model and the training loop

The loop is PyTorch's, with `mc` in place of `torch`: forward, loss,
`zero_grad`, `backward`, `step`. SGD with Nesterov momentum and a
one-cycle learning rate (warm up, then anneal) trains quickly. After each
epoch we measure the accuracy on the held-out images, in eval mode and
without recording a graph, and keep a history to plot.
"""),
    code("""
mc.manual_seed(0)             # the same initial weights and batches on every run
model = mc.models.lenet5()
print(model)
"""),
    code("""
epochs = 3
loader = DataLoader(train_set, batch_size=32, shuffle=True)
optimizer = mc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
scheduler = mc.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, epochs=epochs, steps_per_epoch=len(loader))

def accuracy(model, dataset):
    model.eval()
    with mc.no_grad():
        images, labels = next(iter(DataLoader(dataset, batch_size=len(dataset))))
        return (model(images).argmax(1) == labels).float().mean().item()

history = []
for epoch in range(epochs):
    model.train()
    total, seen = 0.0, 0
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        total, seen = total + loss.item() * len(labels), seen + len(labels)
    history.append(dict(loss=total / seen, train_accuracy=accuracy(model, train_set),
                        test_accuracy=accuracy(model, test_set)))
    print(f"epoch {epoch + 1}: loss {history[-1]['loss']:.3f}, test accuracy {history[-1]['test_accuracy']:.3f}")
"""),
    code("""
mc.viz.history(history)
"""),
    md("""
## The first layer's filters

C1 holds six 5x5 filters. Each output pixel of C1 is the dot product of
one filter with the 5x5 patch under it, so a filter responds most to
patches that look like it: after training they are small stroke and edge
detectors (light where the filter wants ink, dark where it wants none).
"""),
    code("""
mc.viz.filters(model.features[0])
"""),
    md("""
## Feature maps: what each layer makes of one digit

`mc.viz.feature_maps(model, image, layer)` runs the model on one image
and shows the output of `layer` (a module, or its dotted name), one
picture per channel. C1's six 28x28 maps are the image seen through each
filter; after pooling and C3 the sixteen maps are 10x10 and more
abstract: they say *where* a kind of stroke is, less *what the pixels
were*.
"""),
    code("""
image, label = test_set[0]
mc.viz.feature_maps(model, image, "features.0")
"""),
    code("""
mc.viz.feature_maps(model, image, model.features[3])
"""),
    md("""
Next: notebook 5 asks the trained network *which pixels* made it choose
its answer (saliency and Grad-CAM).
"""),
]


RESNET = [
    md("""
# 4. ResNet anatomy: layers, cost and receptive field

A ResNet is a stem (a 7x7 stride-2 conv and a max pool), four stages of
*residual blocks* that each add their input back to their output
(`y = relu(x + F(x))`, so a block only has to learn a correction), and a
classifier. This notebook reads ResNet-18 and ResNet-50 with
`mc.summary`, measures what the place of one stride costs, and computes
how much of the image each layer can see.
"""),
    code("""
import minicnn as mc
"""),
    md("""
## The layer table

`mc.summary(model, input_size)` runs the model once on zeros and lists
each layer's output shape, parameters and multiply-adds. Models are built
inside `mc.nn.no_init()`, which skips initialising the weights: the table
does not depend on them, and ResNet-50's 25 million weights would take
longer to draw than to count.
"""),
    code("""
with mc.nn.no_init():
    resnet18 = mc.models.resnet18()
print(mc.summary(resnet18, (3, 224, 224), depth=1, training_memory=False))
"""),
    md("""
Stages 2 to 4 cost the same number of multiply-adds: each halves the
height and width (4x fewer positions) and doubles the channels (4x more
work per position for a 3x3 conv with twice the input and twice the output
channels). Their parameters grow fourfold each time, which is why most of
a ResNet's weights sit in its last stage.

## ResNet-50's bottleneck block

ResNet-50 replaces the two 3x3 convs of a block with a *bottleneck*: a
1x1 conv that shrinks the channels fourfold, a 3x3 conv at that width,
and a 1x1 conv that widens again. The first block of stages 2 to 4 also
halves the resolution, with a stride of 2 somewhere inside it.
"""),
    code("""
with mc.nn.no_init():
    v15 = mc.models.resnet50()                       # torchvision's placement ("v1.5")
    v1 = mc.models.resnet50(stride_in_1x1=True)      # the paper's placement ("v1")
print(v15.layer2[0])
"""),
    md("""
## v1 against v1.5: where the stride goes, and what it costs

The paper puts the stride in the first 1x1 conv; torchvision moved it to
the 3x3 conv. The parameters are the same, because a conv's weight does
not depend on its stride:
"""),
    code("""
for name, model in (("v1  ", v1), ("v1.5", v15)):
    block = model.layer2[0]
    print(name, "conv1 stride", block.conv1.stride, " conv2 stride", block.conv2.stride,
          " params", sum(p.numel() for p in model.parameters()))
"""),
    md("""
But a conv's cost is proportional to its *output* pixels. In v1.5 the
first 1x1 conv of a downsampling block runs at the full input resolution,
four times the positions of v1's strided 1x1 conv. Comparing the convs of
stage 2's first block:
"""),
    code("""
s1 = mc.summary(v1, (3, 224, 224), training_memory=False)
s15 = mc.summary(v15, (3, 224, 224), training_memory=False)
cost1 = {layer.name: layer.mult_adds for layer in s1.layers}
print(f"{'layer':<18}{'v1':>14}{'v1.5':>14}")
for layer in s15.layers:
    if layer.name.startswith("layer2.0.conv"):
        print(f"{layer.name:<18}{cost1[layer.name]:>14,}{layer.mult_adds:>14,}")
print(f"total: v1 {s1.total_mult_adds / 1e9:.2f} G, v1.5 {s15.total_mult_adds / 1e9:.2f} G multiply-adds")
"""),
    md("""
v1.5 costs about 6% more, and buys accuracy with it: v1's 1x1 conv with
stride 2 reads one input pixel in four and ignores the rest, while v1.5's
3x3 conv with stride 2 still sees every pixel. (The 4.09 G is the figure
torchvision's table lists as "GFLOPS" for ResNet-50.)

## Receptive field

A pixel of a layer's output depends on a square of the input: its
*receptive field*. A k x k conv widens it by (k - 1) times the *jump* (the
distance in input pixels between two neighbouring positions of this
layer), and each stride multiplies the jump. `mc.utils.receptive_field`
follows both through a model, layer by layer; `start` is the input
coordinate of the centre of the first output position's field. It
returns one dict per layer; printed, the list is a table. For LeNet-5, C5
sees the whole 32x32 image:
"""),
    code("""
print(mc.utils.receptive_field(mc.models.lenet5(), (1, 32, 32)))
"""),
    md("""
The `format_receptive_field` function prints any selection of the rows;
here the stem, the last layer of each stage and the head of ResNet-18.
Each stage doubles the jump, and by the last one a single 7x7 output position sees
more than the whole 224x224 input (the part outside the image is
padding). In practice the *effective* receptive field, where the
gradient is large, is much smaller and concentrated at the centre.
"""),
    code("""
rows = mc.utils.receptive_field(resnet18, (3, 224, 224))
last_of_each_part = {row["name"].split(".")[0]: row for row in rows}   # the stem's layers, each stage's last
print(mc.utils.format_receptive_field(list(last_of_each_part.values())))
"""),
]


GRADCAM = [
    md("""
# 5. Why did the network say that? Saliency and Grad-CAM

A trained classifier answers; these two methods ask it which pixels the
answer depended on, using the same backward pass that trains it.

* **Saliency**: the gradient of the class score with respect to the input
  pixels. A large gradient means a small change of that pixel would move
  the score most.
* **Grad-CAM** (Selvaraju et al., 2017): take a convolutional layer's
  feature maps $A^k$, weight each by the average gradient of the class
  score over that map, $\\alpha_k = \\operatorname{mean}_{ij}\\,
  \\partial y_c / \\partial A^k_{ij}$, sum, and keep the positive part:
  $\\operatorname{ReLU}(\\sum_k \\alpha_k A^k)$. Upsampled to the image,
  it shows the regions that speak *for* the class.
"""),
    code("""
%matplotlib inline
import os
import tempfile

import matplotlib.pyplot as plt
import minicnn as mc
import minicnn.viz
from minicnn.train import digits_32x32, train
from minicnn.utils.data import DataLoader
from minicnn.viz.attribution import grad_cam_map, saliency_map
"""),
    md("""
## A model to explain

LeNet-5 on the digits, trained for three epochs. Notebook 3 wrote the
training loop out; this time `minicnn.train.train`, the function behind
`python -m minicnn train`, runs it and saves a checkpoint, and we load
the weights from that file, as one would load a model trained earlier.
`digits_32x32` gives the images the way `train` saw them: standardised
with the training set's mean and standard deviation.
"""),
    code("""
checkpoint = os.path.join(tempfile.mkdtemp(), "lenet5-digits.safetensors")
train("lenet5", "digits", epochs=3, checkpoint=checkpoint, progress=False)

model = mc.models.lenet5()
model.load_state_dict(mc.load(checkpoint)["model"])
model.eval()
train_set, test_set = digits_32x32()
with mc.no_grad():
    images, labels = next(iter(DataLoader(test_set, batch_size=len(test_set))))
    predictions = model(images).argmax(1)
print("test accuracy:", (predictions == labels).float().mean().item())
"""),
    md("""
## Saliency

`mc.viz.saliency(model, image)` shows the image and the absolute input
gradient of the predicted class's score (or of `target`).
"""),
    code("""
image, label = test_set[0]
mc.viz.saliency(model, image)
"""),
    md("""
## Grad-CAM

Grad-CAM needs a layer with spatial maps. LeNet-5's last conv (C5)
outputs 1x1 maps, which cannot say *where*; C3 after its tanh
(`features.4`, sixteen 10x10 maps) is the last layer that still can.
"""),
    code("""
mc.viz.grad_cam(model, image, model.features[4])
"""),
    md("""
## Several digits, and a wrong answer

The maps behind the pictures are plain arrays (`grad_cam_map` and
`saliency_map`, of the image's height and width), so we can lay out our
own figure: for a few test digits, the image, its saliency and its
Grad-CAM overlay, for the predicted class. A misclassified digit, if
there is one, is shown last: its map shows what the network mistook for
the wrong class.
"""),
    code("""
wrong = [i for i in range(len(test_set)) if predictions[i].item() != labels[i].item()]
chosen = [0, 1, 2, 3] + wrong[:1]
fig, axes = plt.subplots(3, len(chosen), figsize=(2 * len(chosen), 6))
for column, i in enumerate(chosen):
    image, label = test_set[i]
    predicted = predictions[i].item()
    pixels = image[0].numpy()
    cam = grad_cam_map(model, image, model.features[4], class_index=predicted)
    axes[0, column].imshow(pixels, cmap="gray")
    axes[0, column].set_title(f"label {int(label)}, said {predicted}")
    axes[1, column].imshow(saliency_map(model, image), cmap="hot")
    axes[2, column].imshow(pixels, cmap="gray")
    axes[2, column].imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
for ax in axes.flat:
    ax.axis("off")
axes[1, 0].set_title("saliency", loc="left")
axes[2, 0].set_title("Grad-CAM", loc="left")
fig.tight_layout()
"""),
    md("""
Saliency is sharp but noisy (it is the gradient of one pixel at a time);
Grad-CAM is coarse (10x10 here, upsampled) but says which *regions*
mattered. On digits these are often regions *without* ink: the blank
either side of a 1 is evidence for "1", since a 0 or an 8 would have ink
there. Both maps are questions asked of the model, not proofs; on photos,
a map that lights up the background rather than the object is the classic
sign of a model that learned a shortcut.
"""),
]


NOTEBOOKS = {
    "01_autograd_from_scratch.ipynb": AUTOGRAD,
    "02_conv_as_im2col_gemm.ipynb": CONV,
    "03_lenet5_on_digits.ipynb": LENET,
    "04_resnet_anatomy.ipynb": RESNET,
    "05_grad_cam_on_digits.ipynb": GRADCAM,
}


def build(filename):
    """The notebook ``filename`` (a key of NOTEBOOKS), without outputs."""
    stem = filename.split("_")[0]
    cells = []
    for i, (kind, text) in enumerate(NOTEBOOKS[filename]):
        make = new_markdown_cell if kind == "markdown" else new_code_cell
        cells.append(make(text, id=f"nb{stem}-cell{i:02d}"))
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def text_of(filename):
    """The file contents this script writes for ``filename``."""
    return nbformat.writes(build(filename)) + "\n"


def main():
    for filename in NOTEBOOKS:
        with open(os.path.join(HERE, filename), "w", encoding="utf-8") as f:
            f.write(text_of(filename))
        print("wrote", os.path.join("examples", filename), file=sys.stderr)


if __name__ == "__main__":
    main()
