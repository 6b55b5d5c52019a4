"""Training a model end to end: ``python -m minicnn train``.

    python -m minicnn train --model lenet5 --dataset digits --epochs 10

trains LeNet-5 on scikit-learn's handwritten digits, shows a progress bar
(loss, accuracy, images per second), evaluates on the held-out test split
after every epoch and saves a checkpoint after every epoch, with a plot of
the loss and accuracies so far beside it (``NAME.history.png``, when
matplotlib is installed); ``--resume``
continues an interrupted run from its checkpoint, exactly where it
stopped (the checkpoint holds the random generator's state too, so a
resumed run computes the same numbers as an uninterrupted one).

The recipe: SGD with Nesterov momentum under a one-cycle schedule (the lr
rises to ``--lr`` over the first 30% of the steps while the momentum dips
from 0.95 to 0.85, then both swing back and the lr anneals towards zero),
batches of 32, and random shifts of up to one pixel (``RandomCrop`` with
``padding=1``) as augmentation. The test split is never trained on.
"""
import argparse
import os
import shlex
import sys
import tempfile
import time

from tqdm import tqdm

from . import datasets, models, random, transforms
from .autograd import no_grad
from .functional import cross_entropy
from .optim import SGD
from .optim.lr_scheduler import OneCycleLR
from .serialization import load, save
from .utils.data import DataLoader

#: The settings that define a run: a resumed run must use the same ones.
RUN_SETTINGS = ("model", "dataset", "epochs", "batch_size", "lr", "seed")


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


#: model name -> builder(num_classes); dataset name -> loader of (train, test).
MODELS = {"lenet5": models.lenet5}
DATASETS = {"digits": digits_32x32}


def default_checkpoint(model, dataset):
    """Where ``train`` saves when not told: checkpoints/MODEL-DATASET.safetensors."""
    return os.path.join("checkpoints", f"{model}-{dataset}.safetensors")


def train(model="lenet5", dataset="digits", epochs=10, batch_size=32, lr=0.1, seed=0, checkpoint=None,
          resume=False, overwrite=False, progress=True, log=None):
    """Train ``model`` on ``dataset``; save a checkpoint after each epoch.

    ``checkpoint`` defaults to ``checkpoints/{model}-{dataset}.safetensors``;
    with ``resume`` training continues from it. A checkpoint that exists is
    never replaced unless ``overwrite`` says so (FileExistsError), and a
    path that cannot be written (a directory, a folder without write
    permission, a "folder" that is a file) is refused before any data is
    loaded (ValueError), not after the first epoch. ``log`` receives one line
    per epoch and a summary (default: printed). Returns a dict with
    ``test_accuracy``, ``correct``, ``total``, ``epochs`` (completed),
    ``seconds`` (of this call) and ``checkpoint`` (its path).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    log = log or tqdm.write
    checkpoint = checkpoint or default_checkpoint(model, dataset)
    _check_checkpoint_path(checkpoint, resume, overwrite)
    settings = dict(model=model, dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    started = time.perf_counter()

    random.manual_seed(seed)
    train_set, test_set = DATASETS[dataset]()
    net = MODELS[model](num_classes=len(train_set.classes))
    optimizer = SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
    scheduler = OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=len(loader))
    history = []
    plot_history = _history_plotter(log)

    if resume:
        state = _load_checkpoint(checkpoint, settings)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        random.set_rng_state(state["rng"])
        history = list(state["history"])
        log(f"resuming from {checkpoint} after epoch {state['epoch']} of {epochs}")

    for epoch in range(len(history), epochs):
        loss, train_accuracy, rate = _train_one_epoch(net, loader, optimizer, scheduler, epoch, epochs, progress)
        correct, total = evaluate(net, test_set)
        history.append(dict(loss=loss, train_accuracy=train_accuracy, test_accuracy=correct / total))
        save(dict(model=net.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                  rng=random.get_rng_state(), epoch=epoch + 1, settings=settings, history=history),
             _ready(checkpoint))
        if plot_history:
            plot_history(history, history_plot_path(checkpoint))
        log(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f}, train accuracy {train_accuracy:.3f}, "
            f"test accuracy {correct / total:.3f} ({correct}/{total}), {rate:.0f} images/s")

    correct, total = evaluate(net, test_set)
    seconds = time.perf_counter() - started
    log(f"test accuracy {correct / total:.1%} ({correct}/{total} held-out images) after {epochs} epochs; "
        f"{seconds:.1f} s; checkpoint {checkpoint}")
    return dict(test_accuracy=correct / total, correct=correct, total=total, epochs=len(history),
                seconds=seconds, checkpoint=checkpoint)


def _train_one_epoch(net, loader, optimizer, scheduler, epoch, epochs, progress):
    """One pass over ``loader``, stepping the scheduler every batch.
    Returns (mean loss, accuracy, images per second)."""
    net.train()
    total_loss, correct, seen = 0.0, 0, 0
    started = time.perf_counter()
    with tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", disable=not progress,
              leave=False, dynamic_ncols=True) as bar:
        for images, labels in bar:
            logits = net(images)
            loss = cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = len(labels)
            total_loss += loss.item() * n
            correct += int((logits.argmax(1) == labels).numpy().sum())
            seen += n
            rate = seen / (time.perf_counter() - started)
            bar.set_postfix({"loss": f"{total_loss / seen:.4f}", "acc": f"{correct / seen:.3f}",
                             "img/s": f"{rate:.0f}"}, refresh=False)
    return total_loss / seen, correct / seen, seen / (time.perf_counter() - started)


def evaluate(net, dataset, batch_size=256):
    """(correct, total): the model's top-1 hits on ``dataset``, in eval
    mode and without recording a graph."""
    net.eval()
    correct = 0
    with no_grad():
        for images, labels in DataLoader(dataset, batch_size=batch_size):
            correct += int((net(images).argmax(1) == labels).numpy().sum())
    return correct, len(dataset)


def _load_checkpoint(path, settings):
    """The checkpoint at ``path``, after checking it belongs to this run."""
    state = load(path)
    saved = state.get("settings", {}) if isinstance(state, dict) else {}
    different = [f"{key}={saved.get(key)!r} (now {settings[key]!r})" for key in RUN_SETTINGS
                 if saved.get(key) != settings[key]]
    if different:
        raise ValueError(f"--resume: {path} belongs to a run with different settings: " + ", ".join(different)
                         + "; resume with the same settings, or start a new run with another --checkpoint")
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
    """The options of ``python -m minicnn train``."""
    parser.add_argument("--model", choices=sorted(MODELS), default="lenet5", help="architecture (default: lenet5)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits", help="data (default: digits)")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training set (default: 10)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default: 32)")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate of the one-cycle schedule "
                                                              "(default: 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seeds initialisation, shuffling, augmentation")
    parser.add_argument("--checkpoint", help="where to save (default: checkpoints/MODEL-DATASET.safetensors)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing checkpoint with a new run (without --resume or --overwrite, "
                             "an existing checkpoint is an error)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")


def main(args):
    """Run ``train`` from parsed command-line ``args``; returns the exit status."""
    try:
        train(model=args.model, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
              seed=args.seed, checkpoint=args.checkpoint, resume=args.resume, overwrite=args.overwrite,
              progress=not args.no_progress)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"python -m minicnn train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Checkpoints are written atomically after each epoch, so the last
        # one is intact; 130 is a shell's status for a run ended by SIGINT.
        checkpoint = args.checkpoint or default_checkpoint(args.model, args.dataset)
        print(f"\ninterrupted; the last finished epoch is saved in {checkpoint}; continue with: "
              f"{resume_command(args)}", file=sys.stderr)
        return 130
    return 0


def resume_command(args):
    """The command line that continues the run of parsed ``args``: every
    option that differs from its default, the checkpoint's path, and
    ``--resume`` (``--overwrite`` dropped), quoted for a POSIX shell."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = vars(parser.parse_args([]))
    words = ["python", "-m", "minicnn", "train"]
    for name, default in defaults.items():
        value = getattr(args, name)
        if name in ("checkpoint", "resume", "overwrite") or value == default:
            continue
        option = "--" + name.replace("_", "-")
        words += [option] if value is True else [option, str(value)]
    words += ["--checkpoint", args.checkpoint or default_checkpoint(args.model, args.dataset), "--resume"]
    return shlex.join(words)
