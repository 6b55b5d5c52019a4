"""The benchmark harness on a tiny case list: timing rows, the report
writers and the README update work; the contention measurement starts its
busy processes and always stops them. Nothing here asserts on speed."""
import contextlib
import csv
import json

import pytest
import torch.nn.functional as TF

import minicnn as mc
import minicnn.nn.functional as F

from benchmarks import contention, load, run
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
    under_load = [contention.slowdown_row("tiny step", busy, {"minicnn": [0.001], "torch": [0.002]},
                                          {"minicnn": [0.001 * (1 + busy)], "torch": [0.003]}) for busy in (1, 2)]
    info = run.machine_info(threads=1)
    text = run.write_results(rows, memory, 0.5, info, tmp_path, contention=under_load)

    assert "| conv2d | tiny fwd |" in text and "skipped: mc.models has no absent_model yet" in text
    assert "ResNet-18 training step, peak memory | 1.25 | 1.50 | yes" in text
    assert "| tiny step | 2 | 1.00 | 3.00 | 3.00 | 2.00 | 3.00 | 1.50 | **2.00** | 2.00-2.00 |" in text
    assert "slowdown under load, minicnn / torch | 2.00 | 1.00 | no" in text
    with open(tmp_path / "contention.csv") as f:
        assert [(r["busy"], float(r["ratio"])) for r in csv.DictReader(f)] == [("1", pytest.approx(4 / 3)),
                                                                              ("2", pytest.approx(2.0))]
    assert (tmp_path / "results.md").read_text().startswith("# Benchmark results")
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["case"] for r in table] == ["tiny fwd", "tiny fwd+bwd", "absent model", "broken"]
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["machine"]["threads"] == 1 and len(payload["cases"]) == 4 and len(payload["contention"]) == 2
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


def test_warm_up_pauses_between_the_frameworks_as_the_timing_does(monkeypatch):
    """Back to back, torch's spinning threads would make minicnn's pool
    think the machine busy for its first timed calls."""
    events = []
    monkeypatch.setattr(run.time, "sleep", lambda s: events.append(("pause", s)))
    run.warm_up(lambda: events.append("minicnn"), lambda: events.append("torch"), 2)
    pause = ("pause", run.SWITCH_PAUSE_S)
    assert events == [pause, "minicnn", pause, "torch"] * 2


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


# -- slowdown under load (contention.py) -----------------------------------
def test_slowdown_is_loaded_over_idle_and_the_ratio_minicnn_over_torch():
    idle = {"minicnn": [1.0, 2.0, 3.0], "torch": [2.0, 2.0, 2.0]}
    loaded = {"minicnn": [2.0, 6.0, 6.0], "torch": [3.0, 3.0, 3.0]}
    row = contention.slowdown_row("conv", 2, idle, loaded)
    assert row["minicnn_idle_ms"] == 2000.0 and row["minicnn_loaded_ms"] == 6000.0
    assert row["minicnn_slowdown"] == 3.0 and row["torch_slowdown"] == 1.5 and row["ratio"] == 2.0
    # Within each repeat: (2/1) / 1.5, (6/2) / 1.5, (6/3) / 1.5.
    assert row["ratio_min"] == pytest.approx(4 / 3) and row["ratio_max"] == pytest.approx(2.0)
    assert row["repeats"] == 3


def test_the_load_target_is_the_worst_ratio_and_needs_every_row():
    rows = [{"workload": "conv", "busy": busy, "status": "ok", "ratio": ratio} for busy, ratio in ((1, 0.9), (2, 1.1))]
    assert run.target_values([], None, None, rows)["contention"] == 1.1
    assert ("slowdown under load, minicnn / torch", 1.1, 1.0, False) in run.summarize([], None, None, rows)
    rows[1] = {"workload": "conv", "busy": 2, "status": "error: RuntimeError: no"}
    assert run.target_values([], None, None, rows)["contention"] is None


def test_busy_processes_burn_during_the_body_and_are_killed_when_it_raises():
    seen = []
    with pytest.raises(RuntimeError, match="the step failed"):
        with contention.busy_processes(2) as processes:
            seen += processes
            assert all(p.poll() is None for p in processes)  # all started and running
            raise RuntimeError("the step failed")
    assert len(seen) == 2 and all(p.returncode is not None for p in seen)


def test_a_busy_process_stops_by_itself_after_its_limit():
    process = contention.start_busy(limit_s=0.1)
    try:
        assert process.stdout.readline() == "busy\n"
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


@pytest.fixture
def started(monkeypatch):
    """Every busy process that ``measure_case`` starts, recorded."""
    processes = []
    real = contention.busy_processes

    @contextlib.contextmanager
    def recording(count):
        with real(count) as running:
            processes.extend(running)
            yield running
    monkeypatch.setattr(contention, "busy_processes", recording)
    return processes


def test_measure_case_times_idle_and_under_each_load(started):
    calls = []
    case = Case("train", "tiny step", lambda: (lambda: calls.append("minicnn"), lambda: calls.append("torch")))
    rows = contention.measure_case(case, warmup=1, repeats=2)
    assert [(r["workload"], r["busy"], r["status"], r["repeats"]) for r in rows] == [
        ("tiny step", 1, "ok", 2), ("tiny step", 2, "ok", 2)]
    # warm-up, then per repeat idle, 1 busy, 2 busy: two calls (untimed, timed) of each framework each time.
    assert calls.count("minicnn") == calls.count("torch") == 1 + 2 * 3 * 2
    assert calls[2:4] == ["minicnn", "minicnn"] and calls[14:16] == ["torch", "torch"]  # who goes first alternates
    assert len(started) == 2 * 3 and all(p.returncode is not None for p in started)


def test_a_workload_failing_under_load_gives_error_rows_and_stops_its_busy_processes(started):
    def step():
        if any(p.poll() is None for p in started):
            raise RuntimeError("out of memory")
    rows = contention.measure_case(Case("train", "tiny step", lambda: (step, lambda: None)), warmup=1, repeats=2)
    assert [(r["busy"], r["status"]) for r in rows] == [(1, "error: RuntimeError: out of memory"),
                                                         (2, "error: RuntimeError: out of memory")]
    assert len(started) == 1 and started[0].returncode is not None


def test_contention_workloads_reuse_the_benchmark_cases():
    conv, step = contention.workloads()
    assert conv.name == "16x96x28x28 -> 96, 3x3/1 fwd+bwd" and conv.flops == 3 * conv_flops(contention.CONV_LAYER)
    assert step.name.startswith("ResNet-18 step") and step.name in {c.name for c in all_cases()}
    assert run.parse_args(["--contention"]).contention


# -- load from other processes (load.py) -----------------------------------
def fake_clock(other_cores_per_s, own_cores_per_s=0.5):
    """A stand-in for ``load.take_sample``: each call is one second later,
    in which other processes used ``other_cores_per_s`` cores and this
    process ``own_cores_per_s``."""
    ticks = iter(range(10 ** 6))

    def sample():
        t = next(ticks)
        return load.Sample(wall_s=float(t), machine_s=t * (other_cores_per_s + own_cores_per_s),
                           own_s=t * own_cores_per_s)
    return sample


def test_other_cores_are_the_machines_cpu_time_minus_ours_over_wall_time():
    first = load.Sample(wall_s=10.0, machine_s=100.0, own_s=5.0)
    last = load.Sample(wall_s=12.0, machine_s=103.5, own_s=6.0)
    assert load.other_cores(first, last) == pytest.approx((3.5 - 1.0) / 2.0)
    assert load.other_cores(first, load.Sample(12.0, None, 6.0)) is None  # no /proc/stat
    meter = load.LoadMeter(fake_clock(0.75))
    assert meter() == pytest.approx(0.75)


def test_the_verdict_names_what_competed():
    calm = load.assess(0.02, 0.1, 0.3, 0.4, 2)
    assert calm["reliable"] and calm["reasons"] == []
    busy = load.assess(0.02, 1.3, 0.3, 2.4, 2)
    assert not busy["reliable"]
    assert busy["reasons"] == ["other processes kept 1.30 of the 2 cores busy during the run (limit 0.25)"]
    assert "before the run" in load.assess(0.9, 0.0, 0.3, 0.4, 2)["reasons"][0]
    # Without /proc/stat only the load average before the run can speak.
    assert "load average was 1.50" in load.assess(None, None, 1.5, 1.5, 2)["reasons"][0]
    assert load.assess(None, None, 0.1, 1.5, 2)["reliable"]


def test_a_competing_process_is_seen():
    if load.machine_cpu_seconds(load.cores()) is None:
        pytest.skip("no /proc/stat")
    with contention.busy_processes(1, limit_s=10):
        value = load.measure_before(seconds=0.5)
    # Other users of the machine can only add to the busy child's share of a core.
    assert value > load.OTHER_CORES_LIMIT


@pytest.mark.parametrize("others", [1.0, 0.0])
def test_a_run_under_load_is_marked_unreliable_everywhere(tmp_path, monkeypatch, capsys, others):
    from benchmarks import cases as case_module
    monkeypatch.setattr(case_module, "all_cases", lambda device="cpu": tiny_cases())
    monkeypatch.setattr(run, "limit_threads", lambda threads: None)
    monkeypatch.setattr(load, "take_sample", fake_clock(others))
    monkeypatch.setattr(load, "BEFORE_S", 0.0)
    readme = tmp_path / "README.md"
    readme.write_text(f"## Benchmarks\n{run.README_START}\nold\n{run.README_END}\n")
    real_update = run.update_readme
    monkeypatch.setattr(run, "update_readme", lambda text: real_update(text, readme))
    run.main(["--only", "tiny", "--warmup", "1", "--repeats", "1", "--out", str(tmp_path), "--update-readme"])
    printed = capsys.readouterr().out
    payload = json.loads((tmp_path / "results.json").read_text())
    texts = {"printed": printed, "results.md": (tmp_path / "results.md").read_text(), "README": readme.read_text()}
    if others:
        assert payload["reliable"] is False and "busy before the run" in payload["unreliable_because"][0]
        assert payload["machine"]["load"]["other_cores_during"] == pytest.approx(1.0)
        assert all(row["other_cores"] == pytest.approx(1.0) for row in payload["cases"])
        for where, text in texts.items():
            assert "**UNRELIABLE: other processes competed for the cores: other processes kept 1.00 of" in text, where
            assert "| conv2d | tiny fwd |" in text and "| **1.00: unreliable** |" in text, where
        assert "UNRELIABLE: other processes used 1.00 cores" in printed  # on the case's progress line
    else:
        assert payload["reliable"] is True and payload["unreliable_because"] == []
        for where, text in texts.items():
            assert "UNRELIABLE" not in text and "unreliable" not in text, where
            assert "Other processes kept 0.00 of the" in text, where


def test_conv_sweep_grid_covers_every_axis_value():
    from benchmarks import conv_sweep
    grid = conv_sweep.GRID
    assert len(grid) >= 60 and len({layer.name() for layer in grid}) == len(grid)
    assert {layer.kernel for layer in grid} >= {(1, 1), (3, 3), (5, 5), (7, 7), (1, 7), (7, 1)}
    assert {layer.stride for layer in grid} == {1, 2} and {layer.dilation for layer in grid} == {1, 2}
    assert {layer.groups for layer in grid} >= {1, 2, 4, 32}
    assert any(layer.grouping == "depthwise" and layer.groups > 32 for layer in grid)
    assert min(layer.n for layer in grid) == 1 and max(layer.n for layer in grid) == 32
    assert min(layer.out_size for layer in grid) == (7, 7) and max(layer.out_size for layer in grid) == (112, 112)
    channels = [c for layer in grid for c in (layer.c, layer.o)]
    assert 16 in channels and max(channels) == 512
    # "same" padding keeps stride-1 maps; a 7x1 kernel pads rows only.
    assert conv_sweep.Layer("", 1, 8, 17, 8, (7, 1)).padding == (3, 0)
    assert conv_sweep.Layer("", 1, 8, 28, 8, (3, 3), dilation=2).out_size == (28, 28)
    assert conv_sweep.Layer("", 2, 8, 10, 6, (3, 3), stride=2, groups=2).flops() == 2 * 2 * 6 * 5 * 5 * 4 * 9
    cases = conv_sweep.sweep_cases(grid[:1])
    assert [c.name.rsplit(" ", 1)[1] for c in cases] == ["fwd", "fwd+bwd"] and cases[0].notes == [grid[0].source]
    assert 0 < len(conv_sweep.quick_layers()) < len(grid)


def test_conv_sweep_report_from_fake_timings(tmp_path):
    from benchmarks import conv_sweep
    layers = conv_sweep.GRID[:3]
    ratios = [0.5, 2.0, 1.0, 1.0, 4.0, 0.25]
    rows = [{"group": "conv-sweep", "case": case.name, "notes": case.notes[0], "status": "ok", "ratio": ratio,
             "ratio_min": ratio / 2, "ratio_max": ratio * 2, "minicnn_ms": ratio, "torch_ms": 1.0,
             "minicnn_gflops": None, "torch_gflops": None, "other_cores": 0.0}
            for case, ratio in zip(conv_sweep.sweep_cases(layers), ratios)]
    rows[-1]["other_cores"] = 1.5
    info = run.machine_info(threads=1)
    info["load"] = load.assess(0.0, 1.0, 0.0, 0.0, 2)
    text = conv_sweep.write_results(rows, layers, info, tmp_path)
    # fwd: 0.5, 1.0, 4.0 -> geometric mean 1.26, worst 4.0; fwd+bwd: 2.0, 1.0, 0.25 -> 0.79, worst 2.0
    assert f"| fwd | 3 | **1.26** | **4.00** | {rows[4]['case']} |" in text
    assert f"| fwd+bwd | 3 | **0.79** | **2.00** | {rows[1]['case']} |" in text
    assert f"| {layers[0].source} | {rows[0]['case']} | 0.50 | 1.00 | **0.50** | 0.25-1.00 |" in text
    assert "**1.50: unreliable**" in text and "UNRELIABLE" in text
    assert (tmp_path / "conv_sweep.md").read_text().startswith("# Conv sweep")
    assert (tmp_path / "conv_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    payload = json.loads((tmp_path / "conv_sweep.json").read_text())
    assert payload["reliable"] is False and payload["summary"]["fwd"]["worst"] == 4.0
    cells = conv_sweep.heat_map_cells(rows, layers)
    # The first three layers: two 7x7/2 stems and a 3x3/1 layer, all dense.
    assert cells["fwd"][("7x7", "dense\n/2")] == [0.5, 1.0] and cells["fwd+bwd"][("3x3", "dense\n/1")] == [0.25]
