"""The attention blocks an image encoder inserts around its backbone, built on a random stream of
their own.

CBAM (Woo et al., ECCV 2018, arXiv:1807.06521) after every stage, on the map the encoder reads or
on its region features; a spatial transformer (Jaderberg et al., NeurIPS 2015, arXiv:1506.02025)
on the image, after a stage or on the read map. Which blocks exist follows from the encoder's
``cbam`` and ``stn`` placements (checked before by :func:`vlkit.vision.options.check_placements`);
CBAM inside the backbone's residual blocks (``cbam: "blocks"``) is built with the backbone
(:func:`vlkit.vision.backbone.create_backbone`), not here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vlkit.vision.cbam import CBAM
from vlkit.vision.stn import FeatureMapLocalization, SaliencyLocalization, SpatialTransformer

__all__ = ["CBAMSettings", "InsertedBlocks", "STNSettings", "build_inserted_blocks"]


@dataclass(frozen=True)
class CBAMSettings:
    """Where CBAM goes and how each block is built.

    Attributes:
        placement: ``None``, ``"stages"``, ``"blocks"``, ``"output"`` or ``"regions"`` (the
            encoder's ``cbam`` argument).
        reduction: channel-MLP reduction ratio ``r`` (> 0); the hidden width is
            ``round(C / r)``, at least 1.
        gate: ``"zero"`` (``x + g · (x · M − x)``, ``g`` starts at 0: the identity at
            initialisation), ``"bounded"`` (the same with ``g`` clamped to [0, 1]) or ``None``
            (the paper's plain ``x · M_c · M_s``).
        spatial_norm: batch-normalise the spatial logits before the sigmoid (the authors' code).
    """

    placement: str | None = None
    reduction: float = 16
    gate: str | None = "zero"
    spatial_norm: bool = False

    def block(
        self, channels: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> CBAM:
        """One CBAM block over ``channels`` channels, built with these settings (on ``device`` in
        ``dtype``, as timm's ``attn_layer`` is called)."""
        return CBAM(
            channels,
            self.reduction,
            gate=self.gate,
            spatial_norm=self.spatial_norm,
            device=device,
            dtype=dtype,
        )


@dataclass(frozen=True)
class STNSettings:
    """Where the spatial transformer goes and how it is built (the options already checked by
    :func:`vlkit.vision.options.check_stn_options`).

    Attributes:
        placement: ``None``, ``"input"``, ``"output"`` or a stage index (the encoder's ``stn``).
        transform: ``"affine"``, ``"attention"`` or ``"translation"``.
        init_scale: the side of the initial window, in units of the map's side (1 = identity).
        output_size: ``(h, w)`` in pixels of the input transformer's output, or ``None`` (the
            input's size).
        localization: ``"conv"`` (a small CNN on the image), ``"backbone"`` (a head on the
            backbone's map of the image) or ``"saliency"`` (a window placed by a softmax over
            that map).
        localization_size: ``(h, w)`` in pixels of the image the backbone localisation reads, or
            ``None``.
    """

    placement: str | int | None = None
    transform: str = "affine"
    init_scale: float = 1.0
    output_size: tuple[int, int] | None = None
    localization: str = "conv"
    localization_size: tuple[int, int] | None = None


@dataclass
class InsertedBlocks:
    """The blocks built for one encoder; an attribute is ``None`` (an empty list for
    ``stage_cbam``) where its placement was not asked for.

    Attributes:
        stage_cbam: one CBAM per stage read, in stage order (``cbam: "stages"``).
        input_stn: the transformer on the image (``stn: "input"``).
        stage_stn: the transformer after stage ``stn`` (an int).
        output_stn: the transformer on the read map (``stn: "output"``).
        output_cbam: CBAM on the read map (``cbam: "output"``).
        region_cbam: CBAM on the region features, after the projection (``cbam: "regions"``).
    """

    stage_cbam: nn.ModuleList
    input_stn: SpatialTransformer | None
    stage_stn: SpatialTransformer | None
    output_stn: SpatialTransformer | None
    output_cbam: CBAM | None
    region_cbam: CBAM | None


def build_inserted_blocks(
    cbam: CBAMSettings,
    stn: STNSettings,
    stage_channels: list[int],
    channels: int,
    dim: int,
    localization_map: Callable[[Tensor], Tensor],
) -> InsertedBlocks:
    """Build the CBAM and spatial-transformer blocks an encoder inserts.

    The blocks draw their initial weights from a random stream of their own, seeded from the next
    draw of torch's CPU stream, which is then left as it was: what they initialise is still
    determined by the seed, and every weight initialised after them is the same as in the model
    without them (a seed's runs with and without blocks start from the same other weights).

    Args:
        cbam: where CBAM goes and how it is built.
        stn: where the spatial transformer goes and how it is built.
        stage_channels: the width of every stage the encoder reads, in order.
        channels: the width ``C`` of the map the encoder reads.
        dim: the width of the encoder's region features (``cbam: "regions"``).
        localization_map: image ``(b, 3, H, W)`` → the backbone's map ``(b, C, h, w)``, for a
            ``"backbone"`` or ``"saliency"`` localisation.

    Returns:
        The blocks; the caller hooks ``stage_cbam`` and ``stage_stn`` onto the stages.

    Raises:
        ValueError: ``stn`` is a stage index the encoder does not read.
    """
    stage_index = (
        stn.placement if isinstance(stn.placement, int) and not isinstance(stn.placement, bool) else None
    )
    if stage_index is not None and stage_index >= len(stage_channels):
        raise ValueError(f"stn={stage_index}: the encoder reads stages 0..{len(stage_channels) - 1}")
    with _separate_rng():
        stage_cbam = nn.ModuleList(
            [cbam.block(width) for width in stage_channels] if cbam.placement == "stages" else []
        )
        input_stn = None
        if stn.placement == "input":
            localization = None
            if stn.localization == "backbone":
                localization = FeatureMapLocalization(localization_map, channels, stn.localization_size)
            elif stn.localization == "saliency":
                localization = SaliencyLocalization(localization_map, channels, stn.localization_size)
            input_stn = SpatialTransformer(
                3,
                stn.transform,
                output_size=stn.output_size,
                init_scale=stn.init_scale,
                localization=localization,
                localization_dim=getattr(localization, "dim", None),
                localization_gives_params=stn.localization == "saliency",
            )
        stage_stn = (
            SpatialTransformer(stage_channels[stage_index], stn.transform, init_scale=stn.init_scale)
            if stage_index is not None
            else None
        )
        return InsertedBlocks(
            stage_cbam=stage_cbam,
            input_stn=input_stn,
            stage_stn=stage_stn,
            output_stn=(
                SpatialTransformer(channels, stn.transform, init_scale=stn.init_scale)
                if stn.placement == "output"
                else None
            ),
            output_cbam=cbam.block(channels) if cbam.placement == "output" else None,
            region_cbam=cbam.block(dim) if cbam.placement == "regions" else None,
        )


@contextlib.contextmanager
def _separate_rng() -> Iterator[None]:
    """Run the body on a copy of torch's CPU random stream, seeded from the stream's next draw,
    and leave the stream as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, ())))
        yield
