"""The face network: a crop in, identity, expression and camera out.

Backbone: a MobileNetV2-style stack of inverted residual blocks (Sandler et al. 2018) in plain torch
(no downloaded weights; torchvision is not used), then a global pooling of its last feature map:
the mean (``pooling="mean"``), or a learned weight per channel and position, a depthwise
convolution as large as the map (``pooling="depthwise"``: MobileFaceNet's global depthwise
convolution, Chen et al. 2018; a face crop is aligned, so where a feature fires says which part of
the face it saw). It starts as the mean, so mean-pooled weights fine-tune into it unchanged.
More capacity without starting over (``extra_blocks``, ``head_hidden``): stride-1 inverted residual
blocks after the 96- and 160-channel stages, and a residual two-layer perceptron on the pooled
feature. Each starts as the identity (the block's last batch norm and the perceptron's output layer
at zero, the "zero-init residual" of Goyal et al. 2017), so trained weights grow into them with the
same outputs and training goes on from there.
Heads, from the pooled feature:
identity ``alpha`` (first K modes of the face model), expression ``beta`` (53, sigmoid -> [0, 1]),
rotation (6D, Zhou et al. 2019), 2D translation and log-scale of the scaled-orthographic camera.
Optional heads (config flags, so weights saved without them still load): ``emotion_head`` (7 logits
over :data:`core.emotions.EMOTIONS`) and ``presence_head`` (one logit: does the crop hold a whole
face). Their outputs are None when the network has no such head.

Camera convention (docs/conventions.md): ``posed = s R V + t`` in crop pixels with y up and the
origin at the crop centre; ``u = x + c``, ``v = -y + c`` with ``c = (size - 1) / 2``
(``camera.project_orthographic``). ``s`` is pixels per centimetre.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .camera import rotation_6d_to_matrix
from .emotions import EMOTIONS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
N_EMOTIONS = len(EMOTIONS)
PARAM_NAMES = ("identity", "expression", "rotation", "translation", "scale", "emotion_logits",
               "presence_logit")  # FaceParams' fields, in order


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture hyper-parameters; stored beside the weights so a checkpoint rebuilds its net."""

    input_size: int = 128
    crop_margin: float = 0.3             # the crop framing it was trained with (core.align)
    width: float = 0.5
    n_identity: int = 40
    n_expressions: int = 53
    feature_dim: int = 512
    # Scale prior: a face (jaw width ~14.7 cm) filling ~70 % of the crop.
    scale_prior: float = 0.7 * 128 / 14.7
    emotion_head: bool = False           # 7 emotion logits from the pooled feature
    presence_head: bool = False          # 1 face-presence logit from the pooled feature
    pooling: str = "mean"                # "mean" | "depthwise" (module docstring)
    extra_blocks: int = 0                # added stride-1 blocks, 8x8 and 4x4 maps in turn (docstring)
    head_hidden: int = 0                 # width of the residual perceptron on the feature (0: none)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FaceParams:
    """Network output for B faces (all tensors, batch first).

    identity: (B, K) identity coefficients (prior N(0, 1)).
    expression: (B, E) expression coefficients in [0, 1].
    rotation: (B, 3, 3) model -> camera rotation (core convention).
    translation: (B, 3) crop pixels, y up, relative to the crop centre; z = 0.
    scale: (B,) pixels per centimetre.
    emotion_logits: (B, 7) logits over core.emotions.EMOTIONS, or None (no emotion head).
    presence_logit: (B,) logit of "the crop holds a whole face", or None (no presence head).
    """

    identity: torch.Tensor
    expression: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor
    emotion_logits: torch.Tensor | None = None
    presence_logit: torch.Tensor | None = None

    def detach(self) -> "FaceParams":
        return self._map(lambda t: t.detach())

    def astuple(self) -> tuple[torch.Tensor | None, ...]:
        return (self.identity, self.expression, self.rotation, self.translation, self.scale,
                self.emotion_logits, self.presence_logit)

    def __getitem__(self, index) -> "FaceParams":
        return self._map(lambda t: t[index])

    def outputs(self) -> dict[str, torch.Tensor]:
        """The tensors by field name, the absent optional heads left out (ONNX output order)."""
        return {name: t for name, t in zip(PARAM_NAMES, self.astuple()) if t is not None}

    def _map(self, fn) -> "FaceParams":
        return FaceParams(*(None if t is None else fn(t) for t in self.astuple()))

    @property
    def emotion(self) -> torch.Tensor | None:
        """(B, 7) emotion probabilities (softmax of the logits), or None."""
        return None if self.emotion_logits is None else torch.softmax(self.emotion_logits, dim=-1)

    @property
    def presence(self) -> torch.Tensor | None:
        """(B,) face-presence probability in [0, 1], or None."""
        return None if self.presence_logit is None else torch.sigmoid(self.presence_logit)


def _divisible(value: float, divisor: int = 8) -> int:
    """Channel counts rounded to a multiple of 8 (fast kernels), never below 90 % of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_act(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise (stride) -> 1x1 linear project; residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(c_in, hidden, kernel=1))
        layers += [conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
                   conv_bn_act(hidden, c_out, kernel=1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


# (expansion, channels, repeats, first stride): MobileNetV2's table
_MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1))


POOLINGS = ("mean", "depthwise")
_EXTRA_STAGES = (96, 160)  # where added blocks go, in turn: the 8x8 and the 4x4 map at 128 px


def identity_block(channels: int, expand: int = 6) -> InvertedResidual:
    """A stride-1 inverted residual block whose output starts equal to its input."""
    block = InvertedResidual(channels, channels, 1, expand)
    last_norm = block.block[-1][1]
    nn.init.zeros_(last_norm.weight)
    return block


class ResidualMLP(nn.Module):
    """``x + W2 relu(W1 x)``, W2 zero at the start (the identity): more capacity between the pooled
    feature and the linear heads."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.inner = nn.Linear(dim, hidden)
        self.outer = nn.Linear(hidden, dim)
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.outer(torch.relu(self.inner(x)))
_BACKBONE_STRIDES = 5  # the stem and four stride-2 stages: the map is the input / 32


def feature_map_side(input_size: int) -> int:
    """Side of the backbone's last feature map for a square input (3x3 convolutions, padding 1)."""
    side = input_size
    for _ in range(_BACKBONE_STRIDES):
        side = (side + 1) // 2
    return side


def resample_pooling(weight: torch.Tensor, map_side: int) -> torch.Tensor:
    """A depthwise pooling kernel (C, 1, s, s), learned on an s x s feature map, for a
    ``map_side`` x ``map_side`` map (another input size): resampled bilinearly with the corners
    kept at the corners, then scaled so that each channel's weights keep their sum (the mean stays
    the mean). Where a channel's resampled sum is near zero, the area ratio scales it instead."""
    if weight.ndim != 4 or weight.shape[1] != 1 or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"a depthwise pooling kernel is (C, 1, s, s), got {tuple(weight.shape)}")
    if map_side < 1:
        raise ValueError(f"map_side must be >= 1, got {map_side}")
    side = weight.shape[-1]
    if side == map_side:
        return weight.clone()
    resized = nn.functional.interpolate(weight, size=(map_side, map_side), mode="bilinear",
                                        align_corners=True)
    before, after = weight.sum((2, 3), keepdim=True), resized.sum((2, 3), keepdim=True)
    usable = after.abs() > 1e-8
    return resized * torch.where(usable, before / torch.where(usable, after, 1.0),
                                 side**2 / map_side**2)


class Backbone(nn.Module):
    """MobileNetV2 body: (B, 3, H, W) -> (B, feature_dim) after a global pooling (``pooling``:
    the mean, or a depthwise convolution over the whole ``map_side`` x ``map_side`` map that
    starts as the mean)."""

    def __init__(self, width: float, feature_dim: int, pooling: str = "mean", map_side: int = 4,
                 extra_blocks: int = 0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if extra_blocks < 0:
            raise ValueError(f"extra_blocks must be >= 0, got {extra_blocks}")
        c_in = _divisible(32 * width)
        layers: list[nn.Module] = [conv_bn_act(3, c_in, stride=2)]
        stage_ends: dict[int, int] = {}  # MobileNetV2 channels -> index of its stage's last layer
        for expand, channels, repeats, stride in _MOBILENET_V2:
            c_out = _divisible(channels * width)
            for i in range(repeats):
                layers.append(InvertedResidual(c_in, c_out, stride if i == 0 else 1, expand))
                c_in = c_out
            stage_ends[channels] = len(layers) - 1
        layers.append(conv_bn_act(c_in, feature_dim, kernel=1))
        self.features = nn.Sequential(*layers)
        # added blocks live in their own list, so the keys of weights saved without them still fit
        hosts = [_EXTRA_STAGES[i % len(_EXTRA_STAGES)] for i in range(extra_blocks)]
        self.extra_after = tuple(stage_ends[c] for c in hosts)
        self.extra = nn.ModuleList(identity_block(_divisible(c * width)) for c in hosts)
        self.pool = None
        if pooling == "depthwise":
            self.pool = nn.Conv2d(feature_dim, feature_dim, map_side, groups=feature_dim, bias=False)
            nn.init.constant_(self.pool.weight, 1.0 / map_side**2)  # = the mean at the start

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, feature_dim, H / 32, W / 32), the added blocks in their places."""
        if not len(self.extra):
            return self.features(x)
        for index, layer in enumerate(self.features):
            x = layer(x)
            for after, block in zip(self.extra_after, self.extra):
                if after == index:
                    x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.feature_map(x)
        if self.pool is None:
            return features.mean(dim=(2, 3))
        if features.shape[-2:] != self.pool.kernel_size:
            raise ValueError(f"depthwise pooling over a {tuple(self.pool.kernel_size)} map got "
                             f"{tuple(features.shape[-2:])}: the input must be the network's "
                             "input_size")
        return self.pool(features).flatten(1)


class FaceNet(nn.Module):
    """Crop (B, 3, S, S) RGB in [0, 1] -> :class:`FaceParams`."""

    def __init__(self, config: NetworkConfig = NetworkConfig()):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config.width, config.feature_dim, config.pooling,
                                 feature_map_side(config.input_size), config.extra_blocks)
        if config.head_hidden < 0:
            raise ValueError(f"head_hidden must be >= 0, got {config.head_hidden}")
        self.neck = ResidualMLP(config.feature_dim, config.head_hidden) if config.head_hidden else None
        k, e = config.n_identity, config.n_expressions
        self.identity_head = nn.Linear(config.feature_dim, k)
        self.expression_head = nn.Linear(config.feature_dim, e)
        self.camera_head = nn.Linear(config.feature_dim, 6 + 2 + 1)
        self.emotion_head = nn.Linear(config.feature_dim, N_EMOTIONS) if config.emotion_head else None
        self.presence_head = nn.Linear(config.feature_dim, 1) if config.presence_head else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_heads()

    def _init_heads(self) -> None:
        # Start at the mean face, frontal, centred, neutral: training begins from a sane mesh.
        for head in (self.identity_head, self.expression_head, self.camera_head):
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)
        with torch.no_grad():
            self.expression_head.bias.fill_(-4.0)  # sigmoid(-4) = 0.018: below the selection threshold
            self.camera_head.bias[:6] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        self.init_optional_heads()

    def init_optional_heads(self) -> None:
        """Fresh emotion (uniform) and presence (p = 0.5) heads; also used when fine-tuning
        weights that had none."""
        for head in (self.emotion_head, self.presence_head):
            if head is not None:
                nn.init.normal_(head.weight, std=1e-2)
                nn.init.zeros_(head.bias)

    def forward(self, images: torch.Tensor) -> FaceParams:
        feature = self.backbone((images - self.mean) / self.std)
        if self.neck is not None:
            feature = self.neck(feature)
        camera = self.camera_head(feature)
        size = self.config.input_size
        translation_xy = camera[:, 6:8] * (size / 4.0)  # O(1) outputs for an O(size/4) shift
        translation = torch.cat((translation_xy, torch.zeros_like(translation_xy[:, :1])), dim=1)
        return FaceParams(
            identity=self.identity_head(feature),
            expression=torch.sigmoid(self.expression_head(feature)),
            rotation=rotation_6d_to_matrix(camera[:, :6]),
            translation=translation,
            scale=self.config.scale_prior * torch.exp(camera[:, 8]),
            emotion_logits=None if self.emotion_head is None else self.emotion_head(feature),
            presence_logit=None if self.presence_head is None else self.presence_head(feature)[:, 0],
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one forward pass on one (3, input_size, input_size) image
    (convolutions and linear layers, which are all but a few per cent of the work)."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * per_output

    def linear_hook(module: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, input_size, input_size))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total
