"""Training a model end to end: ``python -m minicnn train``.

    python -m minicnn train --model lenet5 --dataset digits --epochs 10
    python -m minicnn train --model resnet18 --dataset path/to/images --weights resnet18.pth --freeze-backbone

trains a model of the zoo on scikit-learn's handwritten digits or on a
folder of images in torchvision's ``ImageFolder`` layout, shows a progress
bar (loss, accuracy, images per second), evaluates on the held-out test
split and saves a checkpoint after every epoch, with a plot of the loss
and accuracies so far beside it (``NAME.history.png``, when matplotlib is
installed).

The recipe: SGD with Nesterov momentum under a one-cycle schedule (the lr
rises to ``--lr`` over the first 30% of the steps while the momentum dips
from 0.95 to 0.85, then both swing back and the lr anneals towards zero),
batches of 32, and random shifts of up to one pixel (``RandomCrop`` with
``padding=1``) as augmentation on the digits. The test split is never
trained on.

Resuming and extending
----------------------
The checkpoint stores the run's settings (model, data, epochs, batch
size, lr, seed, ...), the weights, the optimizer, the schedule and the
random generator's state. ``--resume`` continues from it with the stored
settings, exactly where it stopped: a resumed run computes the same
numbers as an uninterrupted one. An option given with ``--resume`` must
agree with the stored run, except ``--epochs``, which may extend it (a
finished run too). The schedule is a sequence of one-cycle *cycles*, one
per request: a run started with 10 epochs is one cycle of 10 epochs, and
``--epochs 12`` then adds a second cycle of 2 epochs, which warms up to
``--lr`` again and anneals (a warm restart, Loshchilov & Hutter's SGDR).
So "10 epochs extended to 12" equals the uninterrupted run
``train(epochs=12, cycles=(10, 2))``, bit for bit.

Several processes
-----------------
``--nproc N`` (or ``mpiexec -n N python -m minicnn train ...``) trains on
N MPI ranks under ``DistributedDataParallel`` (``minicnn/distributed/
launch.py``): ``--batch-size`` is per rank, as in torch, and N ranks of
batch B take the very steps of one process of batch N x B (each epoch's
shuffle comes from ``seed + epoch``, each sample's augmentation from
(seed, epoch, index), and the last incomplete batch is dropped). Only
rank 0 prints and saves; a resumed run must have as many ranks.

The pieces a task defines
-------------------------
What is learnt lives in a task object (``TASKS``, ``--task``): its
``loss(output, target)`` on a batch, where ``target`` is whatever the
dataset's samples carry (class indices here), and ``metric()``, a fresh
accumulator of the score over an epoch. ``Classification``
(cross-entropy, top-1 ``Accuracy``) is the one task here; the loop, the
checkpoint and the log only talk to that interface. A task may also say
how the model is called on a batch (``forward(net, images, targets)``:
``detect.Detection`` gives a detector its targets in training mode) and
which datasets carry its targets (``datasets``).

Other models and data
---------------------
``--model`` is any model of the zoo; images are fitted to it
(``FittedInput``: channels repeated or turned grey, resized to
``--image-size``), and a model that cannot take that size is refused
before training. ``--dataset`` is ``digits`` or a folder in
torchvision's ``ImageFolder`` layout. ``--weights`` and
``--freeze-backbone`` fine-tune pretrained weights with a new classifier
(``minicnn/finetune.py``).
"""
import contextlib
import math
import os
import shlex
import sys
import tempfile
import time

import numpy
from tqdm import tqdm

from . import datasets, detect, finetune, models, random, segment, transforms
from .distributed import launch
from .autograd import no_grad
from .creation import zeros
from .functional import cross_entropy
from .kernels import registry
from .optim import SGD
from .optim.lr_scheduler import OneCycleLR
from .serialization import load, save
from .tensor import Tensor
from .utils.data import DataLoader, Dataset, DistributedSampler, Subset

#: What a run starts with when not told otherwise (``image_size`` None:
#: ``default_image_size``; ``cycles`` None: one cycle over ``epochs``).
DEFAULTS = dict(task="classify", model="lenet5", dataset="digits", data_dir=None, image_size=None, weights=None,
                freeze_backbone=False, epochs=10, batch_size=32, lr=0.1, seed=0)

#: The settings a resumed run takes from its checkpoint; given again,
#: they must agree with it (``epochs`` may grow: that extends the run).
RUN_SETTINGS = ("task", "model", "dataset", "data_dir", "image_size", "weights", "freeze_backbone",
                "batch_size", "lr", "seed")


# -- tasks -----------------------------------------------------------------
class Accuracy:
    """Top-1 accuracy over the batches given to ``update``; ``counts``
    (correct, total) go into ``train``'s result."""
    name = "accuracy"

    def __init__(self):
        self.correct = 0
        self.total = 0

    def update(self, output, target):
        self.correct += int((output.argmax(1) == target).numpy().sum())
        self.total += len(target)

    @property
    def value(self):
        return self.correct / self.total

    @property
    def counts(self):
        return {"correct": self.correct, "total": self.total}

    def __str__(self):
        return f"{self.value:.3f} ({self.correct}/{self.total})"


class Classification:
    """One class label per image: targets are int64 class indices (N,),
    outputs logits (N, classes); cross-entropy loss, top-1 accuracy."""

    def loss(self, output, target):
        return cross_entropy(output, target)

    def metric(self):
        return Accuracy()


#: task name -> task: ``loss(output, target)`` (a scalar Tensor) and
#: ``metric()`` (a fresh accumulator: ``update(output, target)``, ``value``,
#: ``name``, ``counts``, ``str()`` for the log).
TASKS = {"classify": Classification(), "segment": segment.Segmentation(), "detect": detect.Detection()}


def main_output(output):
    """The output a task sees: GoogLeNet and Inception v3 add their
    auxiliary classifiers' outputs in training mode (a tuple, main output
    first); they are trained on their main output only."""
    return output[0] if isinstance(output, tuple) else output


def task_output(task, net, images, targets):
    """What ``task`` sees of ``net`` on a batch: for a task with a
    ``forward(net, images, targets)`` (a detector takes the targets in
    training mode), what it returns; else the model's main output."""
    if hasattr(task, "forward"):
        return task.forward(net, images, targets)
    return main_output(net(images))


# -- data --------------------------------------------------------------------
def digits_32x32():
    """The digits as LeNet-5 wants them: resized to 28x28 and padded to
    32x32, standardised with the training images' mean and std, with
    one-pixel random shifts for training. Returns (train, test)."""
    train_set = datasets.digits(train=True, resize=28, pad=2)
    test_set = datasets.digits(train=False, resize=28, pad=2)
    normalize = transforms.Normalize([float(train_set.data.data.mean())], [float(train_set.data.data.std())])
    train_set.transform = transforms.Compose([transforms.RandomCrop(32, padding=1), normalize])
    test_set.transform = normalize
    return train_set, test_set


#: dataset name -> loader of (train, test) at the data's own size; image
#: folders (``--dataset imagefolder`` or a path) are handled by ``image_folder``.
DATASETS = {"digits": digits_32x32, "digit_scenes": segment.digit_scene_masks}


def image_folder(root, image_size, seed):
    """(train, test) from a folder in ``ImageFolder`` layout
    (``root/CLASS/IMAGE``): ``root/train`` and ``root/val`` (or
    ``root/test``) when both exist, else a split of ``root`` holding out a
    fifth of each class (at least one image of a class of two or more),
    drawn with ``seed``. Images are resized to ``image_size`` squared
    (antialiased bilinear) and normalised with ImageNet's mean and std (what
    torchvision's pretrained weights expect); training images are flipped
    left-right at random."""
    resize = transforms.Resize((image_size, image_size), antialias=True)
    normalize = transforms.Normalize(transforms.IMAGENET_MEAN, transforms.IMAGENET_STD)
    train_transform = transforms.Compose([_to_unit, resize, transforms.RandomHorizontalFlip(), normalize])
    test_transform = transforms.Compose([_to_unit, resize, normalize])
    for test_name in ("val", "test"):
        if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, test_name)):
            train_set = datasets.ImageFolder(os.path.join(root, "train"), transform=train_transform)
            test_set = datasets.ImageFolder(os.path.join(root, test_name), transform=test_transform)
            if test_set.classes != train_set.classes:
                raise ValueError(f"{root}: the classes of train/ ({train_set.classes}) and {test_name}/ "
                                 f"({test_set.classes}) differ")
            return train_set, test_set
    train_set = datasets.ImageFolder(root, transform=train_transform)
    targets = numpy.array(train_set.targets)
    generator = numpy.random.default_rng(seed)
    held_out = []
    for label in range(len(train_set.classes)):
        members = numpy.flatnonzero(targets == label)
        count = max(1, round(len(members) / 5)) if len(members) > 1 else 0
        held_out.extend(generator.choice(members, count, replace=False))
    test_indices = numpy.zeros(len(targets), bool)
    test_indices[held_out] = True
    test_set = datasets.ImageFolder(root, transform=test_transform)
    train_part, test_part = Subset(train_set, numpy.flatnonzero(~test_indices)), Subset(test_set, sorted(held_out))
    train_part.classes = test_part.classes = train_set.classes
    return train_part, test_part


def _to_unit(image):
    """A uint8 image (what ``read_image`` gives) as float32 in [0, 1]."""
    return Tensor._wrap(image.data.astype(numpy.float32) / numpy.float32(255))


class FittedInput(Dataset):
    """``dataset``'s images made to fit a model: ``channels`` channels (one
    channel repeated, or RGB turned grey with the ITU-R 601-2 luma weights
    of PIL's ``convert("L")``) and ``size`` x ``size`` pixels (bilinear)."""

    LUMA = numpy.array([0.299, 0.587, 0.114], numpy.float32)

    def __init__(self, dataset, channels, size):
        self.dataset, self.channels, self.size = dataset, channels, size
        self.classes = dataset.classes

    def __getitem__(self, index):
        image, target = self.dataset[index]
        x = image.data
        if x.shape[0] == 1 and self.channels > 1:
            x = numpy.repeat(x, self.channels, axis=0)
        elif x.shape[0] == 3 and self.channels == 1:
            x = numpy.tensordot(self.LUMA, x, axes=1)[None]
        if x.shape[1:] != (self.size, self.size):
            x = transforms.resize(x, (self.size, self.size))
        return Tensor._wrap(numpy.ascontiguousarray(x, numpy.float32)), target

    def __len__(self):
        return len(self.dataset)


def load_data(settings):
    """(train, test) for a run's ``settings``, at the data's own size."""
    own = getattr(TASKS[settings["task"]], "datasets", None)      # a task whose targets only some data has
    if own is not None:
        if settings["dataset"] not in own:
            raise ValueError(f"task {settings['task']!r} trains on {sorted(own)}, not {settings['dataset']!r}")
        return own[settings["dataset"]]()
    if settings["dataset"] == "imagefolder":
        return image_folder(settings["data_dir"], settings["image_size"], settings["seed"])
    return DATASETS[settings["dataset"]]()


def default_image_size(model, dataset):
    """The side of the square images a run trains on when ``--image-size``
    is not given: 32 for the digits (their scans are 8x8) and for LeNet-5,
    otherwise 224 (torchvision's ImageNet crop, which pretrained weights
    expect); 64 for the digit scenes (their own size: a mask is not resized)."""
    if dataset == "digit_scenes":
        return 64
    return 32 if dataset != "imagefolder" or model == "lenet5" else 224


# -- models --------------------------------------------------------------------
def build_model(settings, num_classes, pretrained=True):
    """The model of a run, for ``num_classes``. A run with ``weights``
    starts from them (``finetune.pretrained``), with a new classifier and,
    with ``freeze_backbone``, nothing else trainable; ``pretrained=False``
    builds that architecture without reading the weights file (a resumed
    run: its checkpoint holds every weight)."""
    name, weights, freeze = settings["model"], settings["weights"], settings["freeze_backbone"]
    if weights is None:
        return models.get_model(name, num_classes=num_classes)
    if pretrained:
        return finetune.pretrained(name, weights, num_classes, freeze_backbone=freeze)
    net = models.get_model(name)
    head = finetune.replace_head(net, num_classes)
    if freeze:
        finetune.freeze_all_but(net, head)
    return net


def _check_input(net, model, channels, size):
    """Refuse, with the reason, an image size ``net`` cannot take."""
    net.eval()
    try:
        with no_grad():
            net(zeros(2, channels, size, size))
    except ValueError as e:
        raise ValueError(f"{model} cannot take {channels}x{size}x{size} images ({e}); "
                         f"choose another --image-size") from None


# -- settings ------------------------------------------------------------------
def default_checkpoint(model, dataset, data_dir=None):
    """Where ``train`` saves when not told: checkpoints/MODEL-DATASET.safetensors
    (DATASET: the image folder's name for an image folder)."""
    name = os.path.basename(os.path.normpath(data_dir)) if dataset == "imagefolder" and data_dir else dataset
    return os.path.join("checkpoints", f"{model}-{name}.safetensors")


def _given_settings(given):
    """The settings given explicitly (not None), checked and normalised:
    a folder as ``dataset`` becomes ``dataset="imagefolder", data_dir=it``,
    paths become absolute."""
    given = {key: value for key, value in given.items() if value is not None}
    if "task" in given and given["task"] not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {given['task']!r}")
    if "model" in given and given["model"] not in models.list_models():
        raise ValueError(f"model must be one of the zoo's ({', '.join(models.list_models())}), "
                         f"got {given['model']!r}")
    dataset = given.get("dataset")
    if dataset is not None and dataset not in DATASETS and dataset != "imagefolder":
        if not os.path.isdir(dataset):
            raise ValueError(f"dataset must be one of {sorted(DATASETS) + ['imagefolder']} or a folder of images "
                             f"in ImageFolder layout (root/CLASS/IMAGE), got {dataset!r}")
        if given.get("data_dir") is not None and os.path.abspath(given["data_dir"]) != os.path.abspath(dataset):
            raise ValueError(f"dataset {dataset!r} is a folder, and data_dir names another ({given['data_dir']!r})")
        given["dataset"], given["data_dir"] = "imagefolder", dataset
    if given.get("dataset") == "imagefolder" or "data_dir" in given:
        folder = given.get("data_dir")
        if given.setdefault("dataset", "imagefolder") != "imagefolder":
            raise ValueError(f"data_dir is for image folders; dataset {given['dataset']!r} takes none")
        if folder is None:
            raise ValueError("dataset 'imagefolder' needs data_dir (--data-dir): the folder of images")
        if not os.path.isdir(folder):
            raise ValueError(f"data_dir {folder!r} is not a folder")
        given["data_dir"] = os.path.abspath(folder)
    if "weights" in given:
        given["weights"] = os.path.abspath(os.path.expanduser(given["weights"]))
    for name in ("epochs", "batch_size", "image_size"):
        value = given.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if "lr" in given and not given["lr"] > 0:
        raise ValueError(f"lr must be positive, got {given['lr']!r}")
    return given


def _new_run(given, cycles):
    """The settings of a new run: ``given``, then the defaults."""
    settings = dict(DEFAULTS, **given)
    if settings["freeze_backbone"] and settings["weights"] is None:
        raise ValueError("freeze_backbone (--freeze-backbone) needs weights (--weights) to keep: "
                         "a frozen random backbone learns nothing")
    if settings["image_size"] is None:
        settings["image_size"] = default_image_size(settings["model"], settings["dataset"])
    if cycles is None:
        cycles = [settings["epochs"]]
    cycles = list(cycles)
    if not cycles or any(isinstance(c, bool) or not isinstance(c, int) or c <= 0 for c in cycles):
        raise ValueError(f"cycles must be positive ints, got {cycles!r}")
    if "epochs" in given and sum(cycles) != settings["epochs"]:
        raise ValueError(f"cycles {cycles} add up to {sum(cycles)} epochs, not epochs={settings['epochs']}")
    settings.update(epochs=sum(cycles), cycles=cycles)
    return settings


def _resumed_run(given, saved, done, path):
    """The settings of a resumed run: the checkpoint's ``saved`` ones, the
    epochs (and a new cycle) extended where ``given`` asks for more."""
    settings = dict(DEFAULTS, **saved)
    settings.setdefault("cycles", [settings["epochs"]])
    if settings["image_size"] is None:                  # a checkpoint written before it was a setting
        settings["image_size"] = default_image_size(settings["model"], settings["dataset"])
    different = [f"{key}={given[key]!r} (the run has {settings[key]!r})" for key in RUN_SETTINGS
                 if key in given and given[key] != settings[key]]
    if different:
        raise ValueError(f"--resume: {path} belongs to a run with other settings: " + ", ".join(different)
                         + "; leave them out to continue the run as it was, or start a new run with another "
                           "--checkpoint")
    epochs = given.get("epochs", settings["epochs"])
    if epochs < settings["epochs"]:
        raise ValueError(f"--resume: epochs={epochs} is fewer than the run's {settings['epochs']} "
                         f"({done} done): --epochs can only extend a run")
    if epochs > settings["epochs"]:
        settings["cycles"] = list(settings["cycles"]) + [epochs - settings["epochs"]]
        settings["epochs"] = epochs
    return settings


def _cycle_starts(cycles):
    """{first epoch of each cycle: its length in epochs}."""
    starts, epoch = {}, 0
    for length in cycles:
        starts[epoch] = length
        epoch += length
    return starts


# -- training ------------------------------------------------------------------
def train(model=None, dataset=None, epochs=None, batch_size=None, lr=None, seed=None, checkpoint=None,
          resume=False, overwrite=False, progress=True, log=None, *, task=None, data_dir=None, image_size=None,
          weights=None, freeze_backbone=None, cycles=None):
    """Train ``model`` (a zoo name) on ``dataset``; save a checkpoint after
    each epoch.

    ``dataset``: ``"digits"``, ``"imagefolder"`` with ``data_dir``, or a
    folder in ``ImageFolder`` layout. Images are fitted to the model: to
    its input channels (one grey channel repeated three times for the
    ImageNet models, RGB turned grey for LeNet-5) and to ``image_size``
    squared (default: ``default_image_size``). A model that cannot take
    that size is refused before training (ValueError, naming the size).
    ``weights``: a weights file (``mc.load_weights``: torchvision's
    ``.pth``, safetensors, npz) loaded before training, the classifier then
    replaced by a new one for the dataset's classes (``finetune.classifier_head``);
    ``freeze_backbone`` trains that classifier alone.

    Settings left as None take their ``DEFAULTS``, or, with ``resume``,
    the checkpoint's stored values; a setting given with ``resume`` must
    agree with the checkpoint, except ``epochs``, which may extend the run
    by one more one-cycle (see the module docstring). ``cycles``: the
    lengths of the run's one-cycle schedules in epochs (default: one cycle,
    ``(epochs,)``), for a new run only.

    ``checkpoint`` defaults to ``checkpoints/{model}-{dataset}.safetensors``.
    A checkpoint that exists is never replaced unless ``overwrite`` says so
    (FileExistsError), and a path that cannot be written (a directory, a
    folder without write permission, a "folder" that is a file) is refused
    before any data is loaded (ValueError). ``log`` receives one line per
    epoch and a summary (default: printed). Returns a dict with
    ``test_accuracy``, ``correct``, ``total``, ``epochs`` (completed),
    ``seconds`` (of this call) and ``checkpoint`` (its path).
    """
    given = _given_settings(dict(task=task, model=model, dataset=dataset, data_dir=data_dir, image_size=image_size,
                                 weights=weights, freeze_backbone=freeze_backbone, epochs=epochs,
                                 batch_size=batch_size, lr=lr, seed=seed))
    log = log or tqdm.write
    checkpoint = checkpoint or default_checkpoint(given.get("model", DEFAULTS["model"]),
                                                  given.get("dataset", DEFAULTS["dataset"]), given.get("data_dir"))
    _check_checkpoint_path(checkpoint, resume, overwrite)
    rank, ranks = launch.join()
    if rank != 0:               # only rank 0 prints and saves
        progress, log = False, (lambda line: None)
    if resume:
        if cycles is not None:
            raise ValueError("cycles: a resumed run keeps its stored cycles (epochs extends it by one)")
        state = _load_checkpoint(checkpoint)
        if state.get("ranks", 1) != ranks:
            raise ValueError(f"--resume: {checkpoint} was trained on {state.get('ranks', 1)} process(es), this run "
                             f"has {ranks}; resume with --nproc {state.get('ranks', 1)} (the batch is per process)")
        settings = _resumed_run(given, state["settings"], state["epoch"], checkpoint)
    else:
        state, settings = None, _new_run(given, cycles)
        if settings["weights"] is not None and not os.path.isfile(settings["weights"]):
            raise FileNotFoundError(f"--weights: there is no file {settings['weights']}")
    started = time.perf_counter()
    with CompileWatch(log) as compiling:
        history, metric = _run(settings, checkpoint, state, progress, log, lambda: compiling.count)
    seconds = time.perf_counter() - started
    log(f"test {metric.name} {metric} on the held-out images after {len(history)} epochs; "
        f"{seconds:.1f} s; checkpoint {checkpoint}")
    return {f"test_{metric.name}": metric.value, **metric.counts, "epochs": len(history), "seconds": seconds,
            "checkpoint": checkpoint}


def _run(settings, checkpoint, state, progress, log, compiles):
    """Train the run of ``settings`` from its start, or from ``state`` (a
    checkpoint) to its last epoch, saving ``checkpoint`` after each.
    Returns (the history of every epoch, the final test metric)."""
    resume = state is not None
    task = TASKS[settings["task"]]
    random.manual_seed(settings["seed"])
    train_set, test_set = load_data(settings)
    net = build_model(settings, len(train_set.classes), pretrained=not resume)
    channels, size = finetune.input_channels(net), settings["image_size"]
    _check_input(net, settings["model"], channels, size)
    if _image_shape(train_set) != (channels, size, size):
        if hasattr(task, "datasets"):       # its targets (boxes) are in the images' pixels: no resizing
            raise ValueError(f"task {settings['task']!r} trains on {settings['dataset']}'s images as they are, "
                             f"{_image_shape(train_set)}; {settings['model']} takes {(channels, size, size)} "
                             f"(leave --image-size out)")
        train_set, test_set = FittedInput(train_set, channels, size), FittedInput(test_set, channels, size)
    optimizer = SGD([p for p in net.parameters() if p.requires_grad], lr=settings["lr"], momentum=0.9,
                    nesterov=True)
    # Every rank takes its share of each epoch's shuffle (seed + epoch), and
    # a sample's augmentation depends on (seed, epoch, index) only; the
    # last incomplete batch is dropped. So N ranks of batch B take the
    # steps of one process of batch N x B, on the same images.
    rank, ranks = launch.join()
    samples = launch.SeededSamples(train_set, settings["seed"])
    drop_last = len(train_set) >= ranks * settings["batch_size"]
    sampler = DistributedSampler(samples, ranks, rank, seed=settings["seed"], drop_last=drop_last)
    loader = DataLoader(samples, batch_size=settings["batch_size"], sampler=sampler, drop_last=drop_last)
    model = launch.parallel_model(net)
    starts = _cycle_starts(settings["cycles"])
    history, scheduler = [], None
    plot_history = _history_plotter(log) if settings["task"] == "classify" else None   # it draws accuracy

    if resume:
        net.load_state_dict(state["model"])
        start = len(state["history"])
        if start not in starts:             # mid-cycle: its schedule, then the optimizer's lr and momentum
            cycle = max(epoch for epoch in starts if epoch < start)
            scheduler = OneCycleLR(optimizer, max_lr=settings["lr"], epochs=starts[cycle],
                                   steps_per_epoch=len(loader))
            scheduler.load_state_dict(state["scheduler"])
        optimizer.load_state_dict(state["optimizer"])
        random.set_rng_state(state["rng"])
        history = list(state["history"])
        log(f"resuming from {checkpoint} after epoch {state['epoch']} of {settings['epochs']}")

    epochs = settings["epochs"]
    for epoch in range(len(history), epochs):
        sampler.set_epoch(epoch)
        samples.set_epoch(epoch)
        if epoch in starts:
            scheduler = OneCycleLR(optimizer, max_lr=settings["lr"], epochs=starts[epoch],
                                   steps_per_epoch=len(loader))
        loss, train_metric, rate = _train_one_epoch(model, loader, optimizer, scheduler, task,
                                                    f"epoch {epoch + 1}/{epochs}", progress, compiles)
        metric = evaluate(net, test_set, task)
        history.append({"loss": loss, f"train_{metric.name}": train_metric.value,
                        f"test_{metric.name}": metric.value})
        if rank == 0:
            save(dict(model=net.state_dict(), optimizer=optimizer.state_dict(),
                      scheduler=scheduler.state_dict(), rng=random.get_rng_state(), epoch=epoch + 1,
                      settings=settings, history=history, ranks=ranks), _ready(checkpoint))
        if plot_history and rank == 0:
            plot_history(history, history_plot_path(checkpoint))
        # A detector's training batches give losses, not detections: no train mAP.
        train = "" if math.isnan(train_metric.value) else f" train {metric.name} {train_metric.value:.3f},"
        log(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f},{train} test {metric.name} {metric}, {rate:.0f} images/s")
    return history, evaluate(net, test_set, task)


def _image_shape(dataset):
    """The shape of ``dataset``'s first image, read without drawing from
    the random generator (its transform may crop at random)."""
    state = random.get_rng_state()
    shape = tuple(dataset[0][0].shape)
    random.set_rng_state(state)
    return shape


def _train_one_epoch(net, loader, optimizer, scheduler, task, description, progress, compiles=lambda: 0):
    """One pass over ``loader``, stepping the scheduler every batch.
    Returns (mean loss, the task's metric, images per second).

    ``compiles()``: how many kernels have been compiled so far
    (``CompileWatch.count``). The rate and the bar's clock (its ETA) start
    again after the first batch and after any batch that compiled kernels,
    so that a first run's compilation does not count as training time."""
    net.train()
    metric = task.metric()
    total_loss, seen, counted = 0.0, 0, None      # counted: images seen when the clock started
    started = time.perf_counter()
    with tqdm(total=len(loader), desc=description, unit="batch", disable=not progress, leave=False,
              dynamic_ncols=True) as bar:
        for images, targets in loader:
            compiled = compiles()
            output = task_output(task, net, images, targets)
            loss = task.loss(output, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = len(targets)
            total_loss += loss.item() * n
            metric.update(output, targets)
            seen += n
            if counted is None or compiles() != compiled:
                counted, started = seen, time.perf_counter()
                restart_clock(bar, bar.n + 1)
            else:
                bar.update(1)
            rate = (seen - counted) / (time.perf_counter() - started) if seen > counted else 0.0
            shown = {"loss": f"{total_loss / seen:.4f}"}
            if not math.isnan(metric.value):
                shown[metric.name[:3]] = f"{metric.value:.3f}"
            bar.set_postfix({**shown, "img/s": f"{rate:.0f}"}, refresh=False)
    elapsed = time.perf_counter() - started
    rate = (seen - counted) / elapsed if seen > counted and elapsed > 0 else 0.0
    return total_loss / seen, metric, rate


def restart_clock(bar, done):
    """Start ``bar``'s clock afresh with ``done`` steps counted: its rate
    and ETA then leave out the time spent so far (a first batch that
    compiled kernels would make the ETA minutes long)."""
    bar.reset()
    bar.initial = bar.n = bar.last_print_n = done
    bar.refresh()


COMPILE_NOTICE = ("compiling minicnn's Numba kernels on first use (once: later runs load them from "
                  "Numba's cache) ...")


class CompileWatch:
    """A context manager that counts the functions Numba compiles while it
    is active (``count``) and ``log``s one line, ``COMPILE_NOTICE``, when
    the first compilation starts: before the wait, not after. Numba's
    ``numba:compile`` event fires only for a function not found in its disk
    cache, so a warm cache stays silent. Counts nothing with the NumPy
    backend."""

    def __init__(self, log):
        self.log = log
        self.count = 0
        self._installed = contextlib.ExitStack()

    def __enter__(self):
        if registry.get_backend() != "numpy" and registry.numba_available():
            from numba.core import event

            watch = self

            class Listener(event.Listener):
                def on_start(self, _):
                    watch.count += 1
                    if watch.count == 1:
                        watch.log(COMPILE_NOTICE)

                def on_end(self, _):
                    pass
            self._installed.enter_context(event.install_listener("numba:compile", Listener()))
        return self

    def __exit__(self, *exc_info):
        self._installed.close()


def evaluate(net, dataset, task=TASKS["classify"], batch_size=256):
    """The task's metric (for classification an ``Accuracy``: ``value``,
    ``correct``, ``total``) of the model on ``dataset``, in eval mode and
    without recording a graph."""
    net.eval()
    metric = task.metric()
    with no_grad():
        for images, targets in DataLoader(dataset, batch_size=batch_size):
            metric.update(task_output(task, net, images, targets), targets)
    return metric


def _load_checkpoint(path):
    """The checkpoint at ``path``, after checking it is one of ``train``'s."""
    state = load(path)
    if not isinstance(state, dict) or not isinstance(state.get("settings"), dict) or "history" not in state:
        raise ValueError(f"--resume: {path} is not a checkpoint written by python -m minicnn train")
    return state


def _check_checkpoint_path(path, resume, overwrite):
    """Refuse, before anything is trained, a checkpoint path that the run
    could not (or must not) write after its first epoch. The errors name
    ``path`` as the user gave it, never the temporary file ``save`` writes."""
    if resume and overwrite:
        raise ValueError("--resume continues the checkpoint and --overwrite replaces it: give one of them")
    if os.path.isdir(path) or not os.path.basename(path):
        raise ValueError(f"the checkpoint {path} is a directory; name a file, e.g. "
                         f"{os.path.join(path, 'run.safetensors')}")
    if resume and not os.path.exists(path):
        raise FileNotFoundError(f"--resume: there is no checkpoint at {path}")
    if not resume and not overwrite and os.path.exists(path):
        raise FileExistsError(f"the checkpoint {path} exists; continue its run with --resume (resume=True) "
                              f"or replace it with --overwrite (overwrite=True)")
    # The folder is created at the first save; until then, the nearest
    # folder that exists must take a new file. A probe file answers that
    # where os.access cannot (root ignores permission bits, read-only mounts).
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"cannot save the checkpoint {path}: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".minicnn-write-test-")
        os.close(handle)
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot save the checkpoint {path}: {existing} is not writable ({e.strerror})") from None


def history_plot_path(checkpoint):
    """Where ``train`` draws the loss and accuracy curves: next to the
    checkpoint, ``<checkpoint without its extension>.history.png``."""
    return os.path.splitext(checkpoint)[0] + ".history.png"


def _history_plotter(log):
    """``plot(history, path)``, which redraws the history PNG atomically
    (a run killed mid-write leaves the previous picture); None, after one
    logged line, when matplotlib is not installed (it is optional: the
    ``viz`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("matplotlib is not installed: no history plot (pip install 'minicnn[viz]' to get one)")
        return None
    from .viz.pictures import history as draw

    def plot(history, path):
        draw(history).savefig(path + ".tmp", format="png", dpi=100)
        os.replace(path + ".tmp", path)
    return plot


def _ready(path):
    """``path``, after creating its folder."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return path


# -- command line ----------------------------------------------------------
def add_arguments(parser):
    """The options of ``python -m minicnn train``. Run settings default to
    None: a new run then takes ``DEFAULTS``, a resumed one its checkpoint's."""
    parser.description = (
        "Train a zoo model on the digits or on a folder of images, evaluate it on held-out images and save a "
        "checkpoint after every epoch. --resume continues the checkpoint's run with its stored settings: options "
        "given with it must agree with them, except --epochs, which may extend the run (a finished one too). "
        "The learning rate follows one one-cycle schedule per request: the epochs an extension adds get a cycle "
        "of their own, warming up to --lr again and annealing (a warm restart), so 10 epochs extended to 12 equal, "
        "bit for bit, an uninterrupted run of a 10-epoch and a 2-epoch cycle (train(epochs=12, cycles=(10, 2)) in "
        "Python).")
    stored = "; with --resume: the stored value"
    parser.add_argument("--model", metavar="NAME",
                        help=f"a model of the zoo, see `python -m minicnn models` (default: lenet5{stored})")
    parser.add_argument("--dataset", metavar="NAME|FOLDER",
                        help="digits, digit_scenes (with --task segment or detect), imagefolder (with --data-dir), "
                             "or a folder in torchvision's ImageFolder "
                             f"layout, FOLDER/CLASS/IMAGE (default: digits{stored})")
    parser.add_argument("--data-dir", metavar="FOLDER", help="the folder of --dataset imagefolder")
    parser.add_argument("--image-size", type=int, metavar="N",
                        help="train on N x N images, with one grey channel repeated for 3-channel models and RGB "
                             "turned grey for LeNet-5 (default: 32 for the digits and for LeNet-5, else 224)")
    parser.add_argument("--task", choices=sorted(TASKS), help=f"what is learnt (default: classify{stored})")
    parser.add_argument("--epochs", type=int, metavar="N",
                        help="passes over the training set (default: 10); with --resume, more than the run's "
                             "extend it")
    parser.add_argument("--batch-size", type=int, metavar="N", help=f"images per step (default: 32{stored})")
    parser.add_argument("--lr", type=float, help=f"peak learning rate of each one-cycle schedule "
                                                 f"(default: 0.1{stored})")
    parser.add_argument("--seed", type=int, metavar="N",
                        help=f"seeds initialisation, shuffling, augmentation (default: 0{stored})")
    parser.add_argument("--weights", metavar="FILE",
                        help="start from these weights (torchvision .pth, safetensors, npz), with the classifier "
                             "(the last Linear layer; SqueezeNet's last Conv2d) replaced by a new one for the "
                             "dataset's classes")
    parser.add_argument("--freeze-backbone", action="store_true", default=None,
                        help="with --weights: train the new classifier only (batch-norm statistics still follow "
                             "the data, as with requires_grad_(False) in torch)")
    parser.add_argument("--checkpoint", metavar="FILE",
                        help="where to save (default: checkpoints/MODEL-DATASET.safetensors)")
    parser.add_argument("--resume", action="store_true", help="continue the checkpoint's run")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing checkpoint with a new run (without --resume or --overwrite, "
                             "an existing checkpoint is an error)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="train on N processes (MPI ranks, started through mpiexec; pip install "
                             "'minicnn[distributed]'), or run `mpiexec -n N python -m minicnn train ...` yourself. "
                             "--batch-size is per process, as in torch: N ranks of batch B take the steps of one "
                             "process of batch N x B. Only rank 0 prints and saves")


def main(args):
    """Run ``train`` from parsed command-line ``args``; returns the exit status."""
    if args.nproc is not None:
        if args.nproc < 1:
            print(f"python -m minicnn train: error: --nproc must be at least 1, got {args.nproc}", file=sys.stderr)
            return 2
        if launch.launched_size() == 1 and args.nproc > 1:
            return launch.run_under_mpiexec(args.nproc, launch.without_option(sys.argv[1:], "--nproc"))
        if launch.launched_size() != args.nproc:
            print(f"python -m minicnn train: error: --nproc {args.nproc}, but mpiexec started "
                  f"{launch.launched_size()} processes; give one of them", file=sys.stderr)
            return 2
    try:
        train(model=args.model, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
              seed=args.seed, checkpoint=args.checkpoint, resume=args.resume, overwrite=args.overwrite,
              progress=not args.no_progress, task=args.task, data_dir=args.data_dir, image_size=args.image_size,
              weights=args.weights, freeze_backbone=args.freeze_backbone)
    except (OSError, ValueError) as e:
        print(f"python -m minicnn train: error: {e}", file=sys.stderr)
        return launch.fail(e, 2)            # on several ranks: abort the others too
    except KeyboardInterrupt:
        # Checkpoints are written atomically after each epoch, so the last
        # one is intact; 130 is a shell's status for a run ended by SIGINT.
        if not launch.is_rank_zero():
            return 130
        if os.path.exists(checkpoint_of(args)):
            print(f"\ninterrupted; the last finished epoch is saved in {checkpoint_of(args)}; continue with: "
                  f"{resume_command(args)}", file=sys.stderr)
        else:
            print("\ninterrupted during the first epoch; nothing was saved", file=sys.stderr)
        return 130
    return 0


def checkpoint_of(args):
    """The checkpoint path of parsed ``args``: given, or the default one."""
    if args.checkpoint:
        return args.checkpoint
    dataset, data_dir = args.dataset or DEFAULTS["dataset"], args.data_dir
    if dataset not in DATASETS and dataset != "imagefolder":
        dataset, data_dir = "imagefolder", dataset
    return default_checkpoint(args.model or DEFAULTS["model"], dataset, data_dir)


def resume_command(args):
    """The command line that continues the run of parsed ``args``: every
    option given, the checkpoint's path, and ``--resume`` (``--overwrite``
    dropped), quoted for a POSIX shell."""
    words = ["python", "-m", "minicnn", "train"]
    for name, value in vars(args).items():
        if name in ("checkpoint", "resume", "overwrite", "command", "run") or value is None or value is False:
            continue
        option = "--" + name.replace("_", "-")
        words += [option] if value is True else [option, str(value)]
    words += ["--checkpoint", checkpoint_of(args), "--resume"]
    return shlex.join(words)
