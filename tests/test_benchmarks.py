"""The benchmark harness on a tiny case list: timing rows, the report
writers and the README update work. Nothing here asserts on speed."""
import csv
import json

import pytest
import torch.nn.functional as TF

import minicnn as mc
import minicnn.nn.functional as F

from benchmarks import run
from benchmarks.cases import Case, _data, _op_case, all_cases, conv_flops, quick_cases


def tiny_cases():
    def conv(backward):
        return _op_case([_data(2, 3, 8, 8), _data(4, 3, 3, 3)], lambda x, w: F.conv2d(x, w, padding=1),
                        lambda x, w: TF.conv2d(x, w, padding=1), backward)

    def broken():
        raise RuntimeError("no such layer")

    return [
        Case("conv2d", "tiny fwd", lambda: conv(False), flops=2 * 2 * 4 * 8 * 8 * 3 * 9),
        Case("conv2d", "tiny fwd+bwd", lambda: conv(True)),
        Case("inference", "absent model", None, skip="mc.models has no absent_model yet"),
        Case("pool", "broken", broken),
    ]


def test_harness_times_cases_and_writes_every_report(tmp_path):
    rows = run.run_cases(tiny_cases(), warmup=1, repeats=1, log=lambda line: None)
    fwd, fwd_bwd, skipped, broken = rows
    for row in (fwd, fwd_bwd):
        assert row["status"] == "ok" and row["minicnn_ms"] > 0 and row["torch_ms"] > 0
        assert row["ratio"] == row["minicnn_ms"] / row["torch_ms"]
    assert fwd["minicnn_gflops"] > 0 and fwd_bwd["minicnn_gflops"] is None
    assert skipped["status"] == "skipped: mc.models has no absent_model yet"
    assert broken["status"] == "error: RuntimeError: no such layer"

    memory = {"status": "ok", "ratio": 1.25, "minicnn": {"step_mib": 50.0, "baseline_mib": 300.0},
              "torch": {"step_mib": 40.0, "baseline_mib": 400.0}}
    info = run.machine_info(threads=1)
    text = run.write_results(rows, memory, 0.5, info, tmp_path)

    assert "| conv2d | tiny fwd |" in text and "skipped: mc.models has no absent_model yet" in text
    assert "ResNet-18 training step, peak memory | 1.25 | 1.50 | yes" in text
    assert (tmp_path / "results.md").read_text().startswith("# Benchmark results")
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["case"] for r in table] == ["tiny fwd", "tiny fwd+bwd", "absent model", "broken"]
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["machine"]["threads"] == 1 and len(payload["cases"]) == 4
    assert {t["target"] for t in payload["targets"]} >= {"ResNet-18 training step, peak memory"}
    assert (tmp_path / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_targets_need_all_seven_conv_layers():
    rows = [{"group": "conv2d", "case": f"layer {i} fwd+bwd", "ratio": 0.5 + i / 10} for i in range(7)]
    rows.append({"group": "train", "case": "LeNet-5 step", "ratio": 2.0})
    values = run.target_values(rows, None, None)
    assert abs(values["conv_geomean"] - (0.5 * 0.6 * 0.7 * 0.8 * 0.9 * 1.0 * 1.1) ** (1 / 7)) < 1e-12
    assert values["conv_worst"] == 1.1 and values["lenet_step"] == 2.0
    assert run.target_values(rows[1:], None, None)["conv_geomean"] is None
    met = {label: ok for label, _, _, ok in run.summarize(rows, None, None)}
    assert met == {"conv2d fwd+bwd, geometric mean of the 7 layers": True, "conv2d fwd+bwd, worst layer": True,
                   "LeNet-5 training step": False}


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n## Benchmarks\n{run.README_START}\nold\n{run.README_END}\n\n## Next\n")
    run.update_readme("| new table |", readme)
    text = readme.read_text()
    assert "old" not in text and "| new table |" in text
    assert text.startswith("# Title") and text.endswith(f"{run.README_END}\n\n## Next\n")


def test_case_lists():
    cases = all_cases()
    conv = [c for c in cases if c.group == "conv2d"]
    assert len(conv) == 14 and len({c.name for c in cases}) == len(cases)
    assert conv_flops((8, 64, 56, 64, 3, 1, 1, "")) == 2 * 8 * 64 * 56 * 56 * 64 * 9
    assert conv_flops((32, 32, 56, 32, 3, 1, 32, "")) == 2 * 32 * 32 * 56 * 56 * 1 * 9
    quick = quick_cases()
    assert 0 < len(quick) < len(cases) and all(c.quick for c in quick)
    assert run.parse_args(["--quick", "--threads", "1"]).threads == 1


def test_timing_waits_for_the_device_before_and_after_each_call():
    events = []
    seconds = run._seconds(lambda: events.append("call"), synchronize=lambda: events.append("sync"))
    assert events == ["sync", "call", "sync"] and seconds >= 0


def test_cases_put_both_frameworks_on_the_device_asked_for():
    mc_fn, torch_fn = _op_case([_data(2, 3, 4, 4)], lambda x: F.relu(x), lambda x: TF.relu(x), True, "cpu")
    mc_fn()
    torch_fn()
    assert all(c.build is not None for c in quick_cases("cuda"))  # listing builds nothing, even without a GPU


@pytest.mark.skipif(mc.cuda.is_available(), reason="checks the refusal on a machine without a usable GPU")
def test_cuda_run_without_a_gpu_says_why():
    with pytest.raises(SystemExit, match="--device cuda: minicnn cannot use a GPU here: .+"):
        run.check_cuda()
