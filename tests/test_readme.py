"""README.md against the code: the figures it quotes from minicnn (the
resnet18 summary, parameter counts, multiply-adds) are recomputed and
compared with its text, so that they cannot go stale, and every link or
image to a local file or a heading of its own resolves."""
import re
from pathlib import Path

import pytest

import minicnn as mc
from minicnn.nn.skip_init import no_init

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def code_block_after(marker):
    """The lines of the fenced code block that follows the one holding
    ``marker`` (which one block must hold)."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", README, flags=re.S | re.M)
    holding = [i for i, block in enumerate(blocks) if marker in block]
    assert len(holding) == 1, f"README must hold {marker!r} in exactly one code block"
    return blocks[holding[0] + 1].rstrip("\n").split("\n")


def figures(text):
    """The numbers in ``text``: commas dropped, decimals as floats."""
    return [float(n.replace(",", "")) if "." in n else int(n.replace(",", ""))
            for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


@pytest.fixture(scope="module")
def resnet18_summary():
    return mc.summary(mc.models.resnet18(), (3, 224, 224), depth=1)


def test_the_summary_examples_attributes_are_what_the_code_gives(resnet18_summary):
    s = resnet18_summary
    call = "s = mc.summary(mc.models.resnet18(), (3, 224, 224), depth=1)\n"
    lines = README[README.index(call):].split("\n")[:5]
    quoted = {}
    for line in lines:
        if "#" in line and line.startswith("s."):
            names, values = line.split("#")
            quoted.update(zip([n.strip()[2:] for n in names.split(",")], figures(values)))
    assert quoted.keys() == {"total_params", "total_mult_adds", "inference_bytes", "training_bytes"}
    assert quoted == {name: getattr(s, name) for name in quoted}


def test_the_printed_summary_matches_the_code_line_for_line(resnet18_summary):
    # The README shows str(summary) with a run of lines elided as "...".
    shown = code_block_after("s = mc.summary(mc.models.resnet18(), (3, 224, 224), depth=1)")
    printed = str(resnet18_summary).split("\n")
    cursor = 0
    for line in shown:
        if line == "...":
            continue
        assert line in printed[cursor:], f"README line {line!r} is not in mc.summary's output:\n" + "\n".join(printed)
        cursor = printed.index(line, cursor) + 1
    assert sum(line != "..." for line in shown) >= 15


def test_the_stage_costs_quoted_in_the_prose(resnet18_summary):
    rows = {line.split()[0]: line for line in str(resnet18_summary).split("\n") if line.startswith("layer")}
    costs = {name: figures(row.split("]")[1])[1] for name, row in rows.items()}
    assert costs["layer2"] == costs["layer3"] == costs["layer4"]
    assert f"Layers 2-4 cost the same {round(costs['layer2'] / 1e6)} million multiply-adds" in README


@pytest.mark.slow
def test_resnet50_v1_and_v1_5_figures():
    v1_5 = mc.summary(mc.models.resnet50(), (3, 224, 224))
    v1 = mc.summary(mc.models.resnet50(stride_in_1x1=True), (3, 224, 224))
    assert f"total_mult_adds                     # {v1_5.total_mult_adds / 1e9:.2f} G" in README
    assert f"total_mult_adds   # {v1.total_mult_adds / 1e9:.2f} G" in README
    assert v1.total_params == v1_5.total_params
    assert f"Same {v1_5.total_params / 1e6:.1f}M\nparameters" in README
    # Three downsampling bottlenecks (layer2-4) make the difference.
    assert f"{round((v1_5.total_mult_adds - v1.total_mult_adds) / 3 / 1e6)} million multiply-adds more per block" \
        in README


def test_the_books_conv_examples():
    # "a 5x5, 200-filter 'same' conv on a 150x100 RGB image has 15,200
    # parameters, 225 million multiplications and a 12 MB output"
    s = mc.summary(mc.nn.Conv2d(3, 200, 5, padding=2), (3, 150, 100))
    output_mb = 200 * 150 * 100 * 4 / 1e6
    assert s.output_bytes == output_mb * 1e6
    assert (f"has {s.total_params:,} parameters, {round(s.total_mult_adds / 1e6)} million\nmultiplications and a "
            f"{round(output_mb)} MB output") in README
    # "the inception 1x1 bottleneck cuts a 5x5 conv from 192 to 32 channels
    # on 28x28 from 120M multiplications to 2.4M + 10M"
    direct = mc.summary(mc.nn.Conv2d(192, 32, 5, padding=2), (192, 28, 28)).total_mult_adds
    squeeze = mc.summary(mc.nn.Conv2d(192, 16, 1), (192, 28, 28)).total_mult_adds
    expand = mc.summary(mc.nn.Conv2d(16, 32, 5, padding=2), (16, 28, 28)).total_mult_adds
    assert (f"from {round(direct / 1e6)}M multiplications to\n{squeeze / 1e6:.1f}M + {round(expand / 1e6)}M"
            in README)


def test_the_largest_zoo_models_parameter_count():
    with no_init():
        model = mc.models.regnet_y_128gf()
    count = sum(p.data.size for p in model.parameters())
    assert f"regnet_y_128gf's {round(count / 1e6)}M parameters" in README


# -- links ---------------------------------------------------------------------
def local_targets(text):
    """Every link or image target in the markdown ``text`` that is not a
    URL, with code blocks and inline code left out (their brackets are
    code)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = re.findall(r"\]\(([^)\s]+)\)", prose)
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped,
    spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


MARKDOWN = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks" / "results").rglob("*.md"))


@pytest.mark.parametrize("name", MARKDOWN)
def test_every_local_link_and_image_exists(name):
    # A relative link resolves from the folder of the file that holds it
    # (benchmarks/results/results.md shows ratios.png beside itself).
    text = (ROOT / name).read_text()
    targets = local_targets(text)
    if name == "README.md":
        assert "benchmarks/results/ratios.png" in targets and "docs/images/filters.png" in targets
    anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M)}
    for target in targets:
        path, _, anchor = target.partition("#")
        if path:
            assert ((ROOT / name).parent / path).exists(), f"{name} links to {target!r}, which does not exist"
        else:
            assert anchor in anchors, f"{name} links to #{anchor}, which no heading makes"


def test_the_slug_rule_on_a_known_heading():
    assert slug("Threads, Ctrl-C and shared machines") == "threads-ctrl-c-and-shared-machines"
    assert slug("Model tools: summary, weight files, classifying images") == \
        "model-tools-summary-weight-files-classifying-images"
