"""Size tables: presets, lookup by name, and clear errors for bad names and impossible shapes."""

from collections.abc import Callable
from dataclasses import replace

import pytest

from ai500.errors import ConfigError
from ai500.micro.kernels import kernel_flops
from ai500.micro.sizes import OPS, PRESETS, ConvSize, FcSize, PoolSize, sizes_for


@pytest.mark.parametrize("op", OPS)
def test_tables_have_unique_names(op: str) -> None:
    for preset in PRESETS:
        names = [size.name for size in sizes_for(op, preset)]
        assert names and len(names) == len(set(names))


@pytest.mark.parametrize("op", OPS)
def test_ci_is_tiny(op: str) -> None:
    sizes = sizes_for(op, "ci")
    assert 2 <= len(sizes) <= 3
    assert all(kernel_flops(op, size, "max_forward" if op == "pool" else "forward") < 2e7 for size in sizes)


@pytest.mark.parametrize("op", OPS)
def test_small_is_full_with_a_smaller_batch(op: str) -> None:
    full = {size.name: size for size in sizes_for(op, "full")}
    for size in sizes_for(op, "small"):
        assert size.batch <= full[size.name].batch
        assert replace(size, batch=full[size.name].batch) == full[size.name]


def test_real_layers_are_there() -> None:
    conv = {size.name: size for size in sizes_for("conv", "full")}
    assert conv["resnet50_conv2_3x3"] == ConvSize("resnet50_conv2_3x3", 128, 56, 56, 64, 64, 3, 3, 1, "SAME")
    assert sum(name.startswith("resnet50_") for name in conv) == 23
    fc = {size.name: size for size in sizes_for("fc", "full")}
    assert fc["vgg16_fc6"].in_features == 512 * 7 * 7
    pool = {size.name: size for size in sizes_for("pool", "full")}
    assert (pool["resnet50_pool1_max_3x3_s2"].out_h, pool["alexnet_pool1_3x3_s2"].out_h) == (56, 27)
    assert pool["resnet50_pool_global_avg"].out_h == 1


def test_sizes_by_name_keep_the_order_given() -> None:
    names = ["tiny_conv_3x5_valid", "tiny_conv_3x3"]
    assert [size.name for size in sizes_for("conv", "ci", names)] == names


@pytest.mark.parametrize(
    ("op", "preset", "names", "message"),
    [
        ("conv", "ci", ["resnet50_conv9_3x3"], "resnet50_conv9_3x3"),
        ("lstm", "ci", None, "lstm"),
        ("fc", "huge", None, "huge"),
    ],
)
def test_unknown_op_preset_or_name(op: str, preset: str, names: list[str] | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sizes_for(op, preset, names)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ConvSize("too_big", 1, 4, 4, 3, 8, 5, 5, 1, "VALID"),
        lambda: ConvSize("no_channels", 1, 8, 8, 0, 8, 3, 3, 1, "SAME"),
        lambda: FcSize("no_rows", 0, 8, 8),
        lambda: PoolSize("bad_padding", 1, 8, 8, 3, 2, 2, "REFLECT"),
    ],
)
def test_impossible_shapes_are_config_errors(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigError, match="size '"):
        make()
