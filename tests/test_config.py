"""Part configurations (vlkit.config): a registered name and every argument of its builder,
checked against the builder's signature and types, completed with its defaults."""

from __future__ import annotations

import copy
import pickle

import pytest
from torch import nn

from vlkit.config import PartConfig, Registry


class Block(nn.Module):
    """A test builder: ``width`` is provided by the model, the rest is configurable."""

    def __init__(
        self, width: int, depth: int = 2, act: str = "relu", sizes: tuple[int, ...] = (1, 2)
    ) -> None:
        super().__init__()
        self.width, self.depth, self.act, self.sizes = width, depth, act, sizes


def needs_name(width: int, name: str) -> nn.Module:
    """A builder with a required configurable argument."""
    return nn.Identity()


BLOCKS = Registry("block", provided=("width",))
BLOCKS.register("plain", Block)
BLOCKS.register("deep", Block, depth=8)
BLOCKS.register("named", needs_name)


class BlockConfig(PartConfig):
    registry = BLOCKS
    default_name = "plain"


def test_a_config_holds_every_argument_with_its_default():
    config = BlockConfig("plain", depth=3)
    assert config.name == "plain" and dict(config.options) == {"depth": 3, "act": "relu", "sizes": (1, 2)}
    assert config.depth == 3 and config.act == "relu"
    assert config.to_dict() == {"name": "plain", "depth": 3, "act": "relu", "sizes": [1, 2]}
    assert BlockConfig() == BlockConfig("plain") == BlockConfig.parse(None) == BlockConfig.parse({})


def test_parse_takes_a_name_a_mapping_or_a_config():
    assert BlockConfig.parse("deep").to_dict() == {"name": "deep", "act": "relu", "sizes": [1, 2]}
    config = BlockConfig.parse({"name": "plain", "sizes": [3, 4]})
    assert config.sizes == (3, 4)  # converted to the annotated tuple type
    assert BlockConfig.parse(config) is config
    assert BlockConfig.parse(config.to_dict()) == config  # round trip through plain data
    with pytest.raises(TypeError, match="a block config is a name or a mapping"):
        BlockConfig.parse(3)


def test_build_gives_the_provided_and_fixed_arguments():
    block = BlockConfig("deep", act="gelu").build(width=5)
    assert (block.width, block.depth, block.act) == (5, 8, "gelu")
    with pytest.raises(TypeError, match=r"\['height'\] are not provided arguments of blocks"):
        BlockConfig().build(width=5, height=3)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("plian", {}, r"unknown block 'plian'; valid: \['deep', 'named', 'plain'\]"),
        (
            "plain",
            {"dpeth": 3},
            r"block 'plain' takes no argument\(s\) \['dpeth'\]; it takes \['depth', 'act', 'sizes'\]",
        ),
        ("deep", {"depth": 3}, r"takes no argument\(s\) \['depth'\].*\(the name fixes \{'depth': 8\}\)"),
        ("plain", {"width": 3}, r"takes no argument\(s\) \['width'\]"),  # provided by the model
        ("plain", {"depth": "three"}, r"block 'plain': .*depth.*Expected a <class 'int'>"),
        ("plain", {"sizes": [1, "x"]}, r"block 'plain': .*sizes"),
        ("named", {}, r"block 'named' needs the argument\(s\) \['name'\]"),
    ],
)
def test_mistakes_are_value_errors_that_say_what_is_valid(name, options, message):
    with pytest.raises(ValueError, match=message):
        BlockConfig(name, **options)


def test_a_required_argument_can_be_given():
    assert BlockConfig("named", name="x").name == "named"


def test_configs_are_immutable_and_replace_checks_again():
    config = BlockConfig("plain")
    with pytest.raises(AttributeError, match="immutable"):
        config.depth = 4
    assert config.replace(depth=4).depth == 4 and config.depth == 2
    with pytest.raises(ValueError, match="depth"):
        config.replace(depth="four")
    with pytest.raises(AttributeError, match="block 'plain' has no argument 'width'"):
        config.width  # noqa: B018


def test_configs_pickle_and_copy():
    config = BlockConfig("plain", depth=5)
    assert pickle.loads(pickle.dumps(config)) == config
    assert copy.deepcopy(config) == config
    assert hash(config) == hash(BlockConfig("plain", depth=5))


def test_registry_refuses_duplicates_and_fixed_provided_arguments():
    registry = Registry("thing", provided=("width",))
    registry.register("a", Block)
    with pytest.raises(ValueError, match="'a' is already registered"):
        registry.register("a", Block)
    with pytest.raises(ValueError, match=r"\['width'\] are provided at build time"):
        registry.register("b", Block, width=3)
    assert list(registry) == ["a"] and len(registry) == 1 and "a" in registry
    assert registry["a"] == (Block, {})
    assert "depth: int = 2" in registry.describe("a")
