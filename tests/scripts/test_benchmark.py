"""Tests for scripts/benchmark.py and scripts/bench/: the plain references of vlkit.testing compute
what the vlkit layers compute, the measures are sound, the command line writes its tables."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlkit.attention import MultiHeadAttention
from vlkit.fusion import FUSIONS, MFB, create_fusion
from vlkit.testing import (
    PlainCrossModalAttention,
    PlainMFB,
    PlainMFBCoAttention,
    PlainParallelCoAttention,
    timm_cbam_like,
    torch_mha_like,
)
from vlkit.vision import CBAM

SCRIPTS = Path(__file__).parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))  # scripts/benchmark.py imports its parts from scripts/bench/
spec = importlib.util.spec_from_file_location("benchmark", SCRIPTS / "benchmark.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)
measurement = importlib.import_module("bench.measurement")
workloads = importlib.import_module("bench.workloads")

B, N, L, D = 3, 9, 6, 16


@pytest.fixture
def inputs():
    """Small random inputs; the image mask drops regions too, so both masks are exercised."""
    torch.manual_seed(0)
    image = torch.randn(B, N, D, requires_grad=True)
    text = torch.randn(B, L, D, requires_grad=True)
    image_mask = torch.ones(B, N, dtype=torch.bool)
    image_mask[1, 6:] = False
    text_mask = torch.arange(L)[None, :] < torch.tensor([L, 2, 4])[:, None]
    return image, image_mask, text, text_mask


def _grads(outputs: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(outputs.sum(), inputs)


def _assert_same_fusion(vl_out, plain_out, image, text, fields=("image_weights", "text_weights")):
    """The fused vectors, the given weights and the input gradients of the two evaluations agree."""
    torch.testing.assert_close(plain_out.fused, vl_out.fused, atol=1e-6, rtol=1e-5)
    for name in fields:
        torch.testing.assert_close(getattr(plain_out, name), getattr(vl_out, name), atol=1e-6, rtol=1e-5)
    for g_plain, g_vl in zip(_grads(plain_out.fused, image, text), _grads(vl_out.fused, image, text)):
        torch.testing.assert_close(g_plain, g_vl, atol=1e-5, rtol=1e-4)


def test_plain_parallel_coattention_equals_vlkit(inputs):
    image, _, text, _ = inputs
    layer = create_fusion("parallel_coattention", D, D, hidden_dim=8)
    plain = PlainParallelCoAttention(layer)
    _assert_same_fusion(layer(*inputs), plain(*inputs), image, text)


def test_plain_cross_modal_attention_equals_vlkit(inputs):
    image, _, text, _ = inputs
    layer = create_fusion("cross_modal_attention", D, D)
    plain = PlainCrossModalAttention(layer)
    _assert_same_fusion(layer(*inputs), plain(*inputs), image, text, fields=("text_weights",))


def test_plain_mfb_coattention_equals_vlkit(inputs):
    image, _, text, _ = inputs
    layer = create_fusion("mfb", D, D, hidden_dim=8, dropout=0.0)
    plain = PlainMFBCoAttention(layer)
    _assert_same_fusion(layer(*inputs), plain(*inputs), image, text)


def test_plain_mfb_block_equals_vlkit(inputs):
    image, _, text, _ = inputs
    question = text.mean(1, keepdim=True)  # (b, 1, d), broadcast over the regions
    block = MFB(D, D, output_dim=8, factor=5, dropout=0.0)
    plain = PlainMFB(block)
    vl_out, plain_out = block(image, question).output, plain(image, question)
    torch.testing.assert_close(plain_out, vl_out, atol=1e-6, rtol=1e-5)
    for g_plain, g_vl in zip(_grads(plain_out, image, text), _grads(vl_out, image, text)):
        torch.testing.assert_close(g_plain, g_vl, atol=1e-5, rtol=1e-4)


def test_plain_references_reject_configurations_they_do_not_cover():
    with pytest.raises(ValueError, match="order=1"):
        PlainMFBCoAttention(create_fusion("mfh", D, D, hidden_dim=8))
    with pytest.raises(ValueError, match="image_to_text"):
        PlainCrossModalAttention(create_fusion("cross_modal_attention", D, D, direction="text_to_image"))
    with pytest.raises(ValueError, match="qkv_bias"):
        torch_mha_like(MultiHeadAttention(D, num_heads=4, qkv_bias=False))


@pytest.mark.parametrize("cross", [False, True])
def test_mha_weight_copy_makes_torch_equal_vlkit(inputs, cross):
    image, image_mask, text, text_mask = inputs
    layer = MultiHeadAttention(D, num_heads=4)
    ref = torch_mha_like(layer)
    key, mask = (image, image_mask) if cross else (text, text_mask)
    vl_out = layer(text, key if cross else None, mask=mask).output
    ref_out = ref(text, key, key, key_padding_mask=~mask, need_weights=False)[0]
    torch.testing.assert_close(ref_out, vl_out, atol=1e-6, rtol=1e-5)
    layer.eval(), ref.eval()
    with torch.no_grad():  # torch's inference fast path, which the forward timing may take
        vl_out = layer(text, key if cross else None, mask=mask).output
        ref_out = ref(text, key, key, key_padding_mask=~mask, need_weights=False)[0]
    torch.testing.assert_close(ref_out, vl_out, atol=1e-6, rtol=1e-5)


def test_timm_cbam_with_copied_weights_equals_vlkit_in_eval():
    torch.manual_seed(0)
    layer = CBAM(32, reduction=8, kernel_size=5)
    with torch.no_grad():
        layer.spatial.conv.bias.fill_(0.3)  # the bias travels into timm's BatchNorm
    ref = timm_cbam_like(layer).eval()
    x = torch.randn(2, 32, 6, 6)
    torch.testing.assert_close(ref(x), layer.eval()(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0])
def test_fit_exponent_recovers_known_exponents(p):
    ns = [49, 196, 784, 3136]
    exponent, c = measurement.fit_exponent(ns, [0.7 * n**p for n in ns])
    assert exponent == pytest.approx(p, abs=1e-9) and c == pytest.approx(0.7, rel=1e-9)
    # multiplicative noise of ±5 % leaves the slope within 0.05 over a 64-fold range
    noisy = [0.7 * n**p * f for n, f in zip(ns, (1.05, 0.95, 1.05, 0.95))]
    assert measurement.fit_exponent(ns, noisy)[0] == pytest.approx(p, abs=0.05)
    with pytest.raises(ValueError):
        measurement.fit_exponent([10], [1.0])


def test_cpu_peak_memory_matches_known_allocations():
    def one_tensor():
        torch.ones(1024, 1024)  # 4 MiB, freed at once

    def live_and_temporary():
        kept = torch.ones(1024, 1024)  # 4 MiB, alive until the end
        temporary = torch.ones(512, 1024)  # 2 MiB, freed before the next allocation
        del temporary
        later = torch.ones(256, 1024)  # 1 MiB: the peak stays 4 + 2 = 6 MiB
        return kept, later

    for fn, expected in ((one_tensor, 4 * measurement.MiB), (live_and_temporary, 6 * measurement.MiB)):
        peak, method = measurement.cpu_peak_bytes(fn)
        assert method == "raw allocation records"
        assert expected <= peak <= 1.2 * expected, (fn.__name__, peak / measurement.MiB)


def test_cpu_peak_memory_of_a_forward_backward():
    a = torch.randn(512, 1024, requires_grad=True)
    b = torch.randn(1024, 2048, requires_grad=True)

    def step():
        c = a @ b  # 4 MiB, alive to the end (as are d and the gradients)
        d = torch.relu(c)  # 4 MiB
        d.sum().backward()  # gradient of c 4 MiB, of b 8 MiB, of a 2 MiB

    peak, _ = measurement.cpu_peak_bytes(step)
    assert 22 * measurement.MiB <= peak <= 1.2 * 22 * measurement.MiB, peak / measurement.MiB


def test_a_failing_layer_is_reported_not_fatal():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("no kernel for this")

    x = torch.randn(2, 3, requires_grad=True)
    bench = measurement.Bench(torch.device("cpu"), None, False, repeats=1, warmup=0, sizes=())
    (result,) = measurement.measure([workloads.Workload(Broken(), lambda m: m(x), (x,))], bench)
    assert result.note == "failed: RuntimeError: no kernel for this" and result.train_ms is None
    bench.compile = True
    assert measurement._failure_note(bench, ValueError("x\ny")).startswith("compile failed: ValueError: x")


def test_the_workload_that_runs_first_rotates_from_round_to_round():
    calls: list[str] = []

    class Named(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name, self.w = name, torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            calls.append(self.name)
            return x * self.w

    x = torch.randn(2, requires_grad=True)
    named = [workloads.Workload(Named(n), lambda m: m(x), (x,)) for n in "abc"]
    bench = measurement.Bench(torch.device("cpu"), None, False, repeats=3, warmup=0, sizes=())
    measurement.measure(named, bench, forward=False)
    assert calls[:9] == list("abcbcacab")


def test_median_and_interquartile_range():
    assert measurement.median_iqr([5.0]) == (5.0, 0.0)
    assert measurement.median_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, 2.0)


def test_every_layer_is_registered_and_runs_forward_and_backward():
    assert set(FUSIONS) <= set(workloads.CASES)
    assert set(workloads.REFERENCES) <= set(workloads.CASES)
    assert set(workloads.SCALING_LAYERS) <= set(workloads.CASES)
    x = workloads.make_inputs(workloads.QUICK_SIZES[0], torch.device("cpu"))
    assert x.text_mask[0].all() and not x.text_mask.all()  # one full row, some padded
    for name, case in workloads.CASES.items():
        workload = case.build(x)
        loss = workloads.primary(workload.forward(workload.module)).sum()
        loss.backward()
        assert math.isfinite(loss.item()), name
        assert all(t.grad is not None for t in workload.inputs), name


def test_main_quick_writes_json_and_markdown(tmp_path, capsys):
    out, markdown = tmp_path / "bench.json", tmp_path / "bench.md"
    layers = ["parallel_coattention", "cbam"]
    args = ["--quick", "--device", "cpu", "--out", str(out), "--markdown", str(markdown), "--scaling"]
    benchmark.main([*args, "--only", *layers])
    results = json.loads(out.read_text())
    assert {"device", "settings", "layers", "references", "scaling"} <= set(results)
    assert {"cpu", "torch_threads", "torch"} <= set(results["device"])
    assert results["settings"]["dtype"] == "float32" and results["settings"]["compile"] is False
    assert results["settings"]["sections"] == ["references", "layers", "scaling"]
    assert sorted(row["layer"] for row in results["layers"]) == sorted(layers)
    for row in results["layers"]:
        assert row["note"] is None and row["forward_ms"] > 0 and row["train_ms"] > 0 and row["peak_mib"] > 0
    assert sorted(row["layer"] for row in results["references"]) == sorted(layers)
    for row in results["references"]:
        assert set(row["ratio"]) == {"forward_ms", "train_ms", "peak_mib"} and row["ratio"]["train_ms"] > 0
        assert row["max_abs_diff"] < 1e-5
        for side in ("vlkit", "ref"):  # minor page faults per call, beside the times
            assert row[side]["forward_faults"] >= 0 and row[side]["train_faults"] >= 0
    assert results["settings"]["allocator"].startswith("default (--allocator tuned applies to a command-line")
    exponents = results["scaling"]["exponents"]
    assert {(e["layer"], e["axis"]) for e in exponents} == {
        ("parallel_coattention", "regions"),
        ("parallel_coattention", "tokens"),
    }
    text = markdown.read_text()
    assert "| parallel_coattention | quick |" in text and "timm CbamModule" in text and "exponent" in text
    assert "page faults / call vlkit : ref" in text
    assert text in capsys.readouterr().out


def test_the_command_line_run_re_executes_itself_with_the_tuned_allocator(tmp_path):
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(SCRIPTS / "benchmark.py"),
        "--quick",
        "--device",
        "cpu",
        "--sections",
        "references",
    ]
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    subprocess.run([*command, "--only", "cbam", "--out", str(out)], check=True, env=env, capture_output=True)
    assert (
        json.loads(out.read_text())["settings"]["allocator"]
        == f"tuned (GLIBC_TUNABLES={benchmark.TUNED_GLIBC})"
    )
    subprocess.run(
        [*command, "--only", "cbam", "--out", str(out), "--allocator", "default"],
        check=True,
        env=env,
        capture_output=True,
    )
    assert json.loads(out.read_text())["settings"]["allocator"] == "default (GLIBC_TUNABLES='')"


def test_bf16_autocast_and_compile_run_layers_and_references(tmp_path):
    """The settings of the GPU table (--dtype bfloat16 --compile), run on the CPU."""
    out = tmp_path / "bench.json"
    layers = ["mha_self", "mfb_block"]
    args = ["--quick", "--dtype", "bfloat16", "--compile", "--sections", "references", "--out", str(out)]
    benchmark.main([*args, "--only", *layers])
    results = json.loads(out.read_text())
    assert results["settings"]["dtype"] == "bfloat16" and results["settings"]["compile"] is True
    assert sorted(row["layer"] for row in results["references"]) == sorted(layers)
    for row in results["references"]:
        assert row["vlkit"]["note"] is None and row["ref"]["note"] is None, row
        assert row["ratio"]["forward_ms"] > 0 and row["ratio"]["train_ms"] > 0


def test_data_section_reports_loader_and_step_rates(tiny_vqa_on_disk, tmp_path, monkeypatch):
    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path / "cache"))
    data_args = (
        f"--data.init_args.dataset {tiny_vqa_on_disk} --data.init_args.image_column img "
        "--data.init_args.question_column q --data.init_args.answer_column answers "
        "--data.init_args.image_size 32 --data.init_args.batch_size 4 --data.init_args.num_workers 0"
    )
    markdown = tmp_path / "data.md"
    results = benchmark.main(
        ["--quick", "--sections", "data", f"--data-args={data_args}", "--markdown", str(markdown)]
    )
    rates = results["data"]
    assert set(rates["data"]) == {
        "images, 0 workers", "images, 1 workers", "cached features, 0 workers", "cached features, 1 workers"
    }  # fmt: skip
    assert rates["step"] > 0 and rates["step (cached features)"] > 0
    assert "| training step (forward + backward + AdamW) |" in markdown.read_text()
