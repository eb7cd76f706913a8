"""Tests for scripts/init_swap.py: taking some parts' initial weights from another model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).parents[2] / "scripts" / "init_swap.py"
spec = importlib.util.spec_from_file_location("init_swap", SCRIPT)
init_swap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(init_swap)


class Task(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.model = nn.ModuleDict({"text_encoder": nn.Linear(3, 4), "head": nn.Linear(4, 2)})


def test_only_the_named_parts_are_taken():
    target, source = Task(0), Task(4)
    head_before = target.model["head"].weight.clone()
    taken = init_swap.take_initial_weights(target, source, ["text_encoder"])
    assert sorted(taken) == ["model.text_encoder.bias", "model.text_encoder.weight"]
    assert torch.equal(target.model["text_encoder"].weight, source.model["text_encoder"].weight)
    assert torch.equal(target.model["head"].weight, head_before)
    assert not torch.equal(head_before, source.model["head"].weight)
    init_swap.take_initial_weights(target, source, ["all"])
    assert torch.equal(target.model["head"].weight, source.model["head"].weight)


def test_a_part_that_is_not_there_is_an_error():
    with pytest.raises(
        ValueError,
        match=r"--parts 'fusion' names nothing in the model; its parts are \['head', 'text_encoder'\]",
    ):
        init_swap.take_initial_weights(Task(0), Task(1), ["fusion"])
