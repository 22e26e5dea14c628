"""Typed options, YAML presets and command-line overrides.

One dataclass holds every option of a training or translation run. Its
fields carry their help text and choices, and the command-line parser is
built from them, so a flag, its default and its documentation live in one
place. Precedence: dataclass default < preset (``--config``) < flags given
on the command line. Flag names follow the official CycleGAN/pix2pix code
where the concept is the same, so users' commands carry over.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .nets.spec import OPTION_KEYS as GENERATOR_KEYS
from .errors import UsageError

PRESETS_DIR = Path(__file__).parent / "presets"


def opt(default, help: str, choices=None, group: str = "general"):
    return field(default=default, metadata={"help": help, "choices": choices, "group": group})


@dataclass
class Options:
    # --- run ---------------------------------------------------------------
    dataroot: str = opt("", "dataset folder (trainA/trainB/testA/testB, or train/ and test/ for aligned)", group="run")
    name: str = opt("experiment", "run name: checkpoints go to CHECKPOINTS_DIR/NAME", group="run")
    model: str = opt("cycle_gan", "method to train: cycle_gan (unpaired), pix2pix (aligned pairs), colorization "
                     "(pix2pix from L to ab in Lab); pix2pix and colorization change other defaults as the "
                     "official code does; cartoongan: CartoonGAN (photos in trainA, cartoons in trainB); cut: CUT or "
                     "FastCUT (--CUT_mode), one generator A -> B trained with PatchNCE instead of a cycle",
                     group="run")  # checked against the registry, methods.METHODS
    checkpoints_dir: str = opt("checkpoints", "where runs are stored", group="run")
    seed: int = opt(0, "random seed for weights, data order and augmentation", group="run")
    deterministic: bool = opt(False, "use deterministic algorithms (bit-identical resume on CPU)", group="run")
    device: str = opt("auto", "compute device", choices=["auto", "cpu", "cuda"], group="run")
    gpu_ids: str = opt("", "official-style GPU list, e.g. '0'; '-1' means CPU (prefer --device)", group="run")
    precision: str = opt("auto", "arithmetic of the forward passes: auto picks bf16 where the CPU (avx512_bf16, "
                         "amx_bf16) or GPU runs it natively, else fp32, and says why; fp16 scales the losses "
                         "(one GradScaler for all optimizers). Weights, losses and checkpoints stay fp32",
                         choices=["auto", "fp32", "bf16", "fp16"], group="run")
    dist_backend: str = opt("auto", "with torchrun: the process group's backend (auto: nccl on CUDA, gloo on CPU)",
                            choices=["auto", "gloo", "nccl"], group="distributed")
    sync_bn: bool = opt(True, "with torchrun and --norm batch: batch statistics over the global batch, every "
                        "process's (SyncBatchNorm); false keeps each process's own", group="distributed")
    dist_timeout: int = opt(120, "with torchrun: seconds a process waits for the others before the job fails",
                            group="distributed")
    channels_last: bool = opt(False, "keep the networks' weights and activations in channels-last (NHWC) memory "
                              "order; see `transfigure benchmark speed` for whether it helps on this machine",
                              group="run")
    compile: str = opt("off", "torch.compile every network: inductor (generated kernels; the first iterations "
                       "compile, later ones run faster where the backend helps) or aot_eager (checks tracing "
                       "only); see `transfigure benchmark speed`", choices=["off", "inductor", "aot_eager"],
                       group="run")
    # --- networks ----------------------------------------------------------
    input_nc: int = opt(3, "channels of domain A images: 1 (grayscale) or 3 (RGB)", choices=[1, 2, 3],
                        group="networks")
    output_nc: int = opt(3, "channels of domain B images: 1 or 3 (2 = ab of Lab, for colorization only)",
                         choices=[1, 2, 3], group="networks")
    ngf: int = opt(64, "generator filters in the first conv layer", group="networks")
    ndf: int = opt(64, "discriminator filters in the first conv layer", group="networks")
    netG: str = opt("resnet_9blocks", "generator: resnet_9blocks, resnet_6blocks (any resnet_<N>blocks), "
                    "unet_128, unet_256", group="networks")
    netD: str = opt("basic", "discriminator: basic = 70x70 PatchGAN, n_layers uses --n_layers_D, pixel = 1x1",
                    choices=["basic", "n_layers", "pixel", "cartoongan"], group="networks")
    n_layers_D: int = opt(3, "discriminator conv layers when --netD n_layers", group="networks")
    norm: str = opt("instance", "normalization layer", choices=["instance", "batch", "none"], group="networks")
    init_type: str = opt("normal", "weight initialization",
                         choices=["normal", "xavier", "kaiming", "orthogonal"], group="networks")
    init_gain: float = opt(0.02, "scale for normal/xavier/orthogonal init", group="networks")
    activation: str = opt("relu", "generator activation of the CartoonGAN generator (improved variant: leaky_relu)",
                          choices=["relu", "leaky_relu"], group="networks")
    activation_slope: float = opt(0.01, "negative slope for --activation leaky_relu", group="networks")
    no_dropout: bool = opt(True, "no dropout in the generator (CycleGAN default)", group="networks")
    no_antialias: bool = opt(True, "strided convs for downsampling in resnet generators and PatchGANs, as CycleGAN "
                             "(the default except for --model cut); false: CUT's anti-aliased downsampling "
                             "(stride-1 conv, then a fixed blur with stride 2)", group="networks")
    no_antialias_up: bool = opt(True, "learned transposed convs for upsampling in resnet generators, as CycleGAN "
                                "(the default except for --model cut); false: CUT's fixed blur upsampling, then a "
                                "conv", group="networks")
    # --- data --------------------------------------------------------------
    dataset_mode: str = opt("unaligned", "dataset layout",
                            choices=["unaligned", "aligned", "single", "colorization"], group="data")
    direction: str = opt("AtoB", "translation direction", choices=["AtoB", "BtoA"], group="data")
    serial_batches: bool = opt(False, "take B images in order instead of at random", group="data")
    num_threads: int = opt(2, "data loading worker processes (0 = in the main process)", group="data")
    batch_size: int = opt(1, "images per batch and process: with torchrun the global batch is batch_size x the "
                          "number of processes, and the learning rate is not rescaled for it", group="data")
    load_size: int = opt(286, "scale images to this size before cropping", group="data")
    crop_size: int = opt(256, "then crop to this size", group="data")
    max_dataset_size: int = opt(0, "use at most this many images per domain; 0 = all", group="data")
    preprocess: str = opt("resize_and_crop", "how images are scaled and cropped at load time",
                          choices=["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"],
                          group="data")
    no_flip: bool = opt(False, "no random horizontal flips", group="data")
    skip_bad_images: bool = opt(False, "skip unreadable images (counted and reported) instead of stopping",
                                group="data")
    # --- training ----------------------------------------------------------
    gan_mode: str = opt("lsgan", "GAN objective", choices=["vanilla", "lsgan", "wgangp"], group="training")
    lambda_gp: float = opt(10.0, "gradient penalty weight for --gan_mode wgangp", group="training")
    lr: float = opt(2e-4, "initial Adam learning rate", group="training")
    beta1: float = opt(0.5, "Adam beta1", group="training")
    beta2: float = opt(0.999, "Adam beta2", group="training")
    lr_policy: str = opt("linear", "learning-rate schedule",
                         choices=["linear", "step", "cosine", "plateau"], group="training")
    lr_decay_iters: int = opt(50, "epochs between lr drops for --lr_policy step", group="training")
    n_epochs: int = opt(100, "epochs at the initial learning rate", group="training")
    n_epochs_decay: int = opt(100, "epochs of linear decay to zero", group="training")
    epoch_count: int = opt(1, "number of the first epoch (official flag; resume sets it itself)", group="training")
    max_iters: int = opt(0, "stop after this many iterations in all (0 = run all epochs); resume later",
                         group="training")
    pool_size: int = opt(50, "image pool of past generated images shown to the discriminators", group="training")
    lambda_A: float = opt(10.0, "weight of the cycle loss A -> B -> A", group="training")
    lambda_B: float = opt(10.0, "weight of the cycle loss B -> A -> B", group="training")
    lambda_identity: float = opt(0.5, "identity loss weight, relative to lambda_A/B (0 = off)", group="training")
    lambda_GAN: float = opt(1.0, "weight of the adversarial loss (cycle_gan; 0 = the paper's 'cycle alone')",
                            group="training")
    lambda_pixel: float = opt(0.0, "L1 between input and output, SimGAN-style (cycle_gan baseline 'pixel loss + "
                              "GAN')", group="training")
    lambda_feature: float = opt(0.0, "L1 between --feature_net features of input and output (cycle_gan baseline "
                                "'feature loss + GAN')", group="training")
    feature_net: str = opt("vgg16:relu3_3", "network:layer for --lambda_feature, a torchvision model with "
                           "ImageNet weights (e.g. vgg16:relu3_3, vgg19:relu4_4, resnet50:layer2)", group="training")
    feature_weights: str = opt("", "local weights file for --feature_net (else torchvision's cache/download; "
                               "'random': fixed random weights, for offline experiments only)",
                               group="training")
    lambda_content: float = opt(10.0, "weight of the content loss (cartoongan): L1 between --content_net features "
                                "of the photo and of its cartoon", group="training")
    content_net: str = opt("vgg19:conv4_4", "content network model:layer, a torchvision model with ImageNet weights "
                           "(paper: vgg19:conv4_4; improved variant: resnet101:layer2)", group="training")
    content_weights: str = opt("", "local weights file for --content_net (else torchvision's cache/download; "
                               "'random': fixed random weights, for offline experiments only)",
                               group="training")
    init_epochs: int = opt(0, "initialization phase: epochs of content loss only, before adversarial training "
                           "(cartoongan default 10; also on cycle_gan)", group="training")
    edge_smoothing: bool = opt(False, "cycle_gan: edge-smoothed B images as extra fakes for the B-domain "
                               "discriminator (CartoonGAN's edge-promoting loss)", group="training")
    lambda_L1: float = opt(100.0, "weight of the L1 loss to the target (pix2pix)", group="training")
    # --- CUT / FastCUT -------------------------------------------------------
    CUT_mode: str = opt("CUT", "--model cut: CUT (identity NCE on B, lambda_NCE 1) or FastCUT (no identity NCE, "
                        "lambda_NCE 10, flip equivariance, 150 + 50 epochs); sets those defaults, flags given win",
                        choices=["CUT", "FastCUT", "cut", "fastcut"], group="cut")
    lambda_NCE: float = opt(1.0, "weight of the PatchNCE loss (CUT 1, FastCUT 10)", group="cut")
    nce_idt: bool = opt(True, "PatchNCE also between B images and G(B), the identity NCE (on for CUT, off for "
                        "FastCUT)", group="cut")
    nce_layers: str = opt("0,4,8,12,16", "generator layers (indices into its layer list, ascending) whose features "
                          "PatchNCE compares", group="cut")
    nce_includes_all_negatives_from_minibatch: bool = opt(
        False, "PatchNCE negatives from every image of the batch, not only the patch's own image", group="cut")
    netF: str = opt("mlp_sample", "projection of sampled patch features: mlp_sample (a two-layer MLP per layer, "
                    "the paper) or sample (none)", choices=["mlp_sample", "sample"], group="cut")
    netF_nc: int = opt(256, "output channels of the projection MLPs", group="cut")
    nce_T: float = opt(0.07, "temperature of the PatchNCE softmax", group="cut")
    num_patches: int = opt(256, "patch locations sampled per layer and image (all locations when the feature map "
                           "has fewer)", group="cut")
    flip_equivariance: bool = opt(False, "flip the input horizontally at random and the output's features back "
                                  "(FastCUT's regularization)", group="cut")
    # --- checkpoints and logging -------------------------------------------
    continue_train: bool = opt(False, "resume from the run's checkpoint (see --epoch)", group="checkpoints")
    epoch: str = opt("latest", "which checkpoint to resume or translate with: 'latest' or an epoch number",
                     group="checkpoints")
    save_epoch_freq: int = opt(5, "keep a checkpoint every N epochs", group="checkpoints")
    save_latest_freq: int = opt(5000, "refresh the 'latest' checkpoint every N iterations", group="checkpoints")
    print_freq: int = opt(100, "log losses every N iterations", group="checkpoints")
    display_freq: int = opt(0, "write a sample grid every N iterations (0 = once per epoch)", group="checkpoints")
    config: str = opt("", "YAML preset: a file path or a built-in name (cyclegan, demo)", group="run")

    # Options that define what a checkpoint contains: resuming with other
    # values would load weights into the wrong shapes or a different method.
    ARCHITECTURE_KEYS = ("model", *GENERATOR_KEYS, "ndf", "netD", "n_layers_D", "gan_mode", "direction",
                         "nce_layers", "netF", "netF_nc")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


OPTION_FIELDS = {f.name: f for f in fields(Options)}


def resolve_preset_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = PRESETS_DIR / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if builtin.is_file():
        return builtin
    available = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
    raise ConfigError(f"--config {name_or_path}: no such file and no built-in preset of that name "
                      f"(built-in presets: {available})")


class ConfigError(UsageError):
    """A bad option value or preset; the message names the option."""


def load_preset(name_or_path: str) -> dict[str, Any]:
    path = resolve_preset_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not readable YAML ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); fix or remove the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path}: expected a mapping of option: value")
    unknown = sorted(set(data) - set(OPTION_FIELDS))
    if unknown:
        raise ConfigError(f"preset {path}: unknown option(s) {', '.join(unknown)}")
    return data


def _coerce(name: str, value: Any) -> Any:
    f = OPTION_FIELDS[name]
    kind = type(f.default)
    try:
        if kind is bool and not isinstance(value, bool):
            if str(value).lower() in ("1", "true", "yes", "on"):
                value = True
            elif str(value).lower() in ("0", "false", "no", "off"):
                value = False
            else:
                raise UsageError(value)
        elif kind in (int, float, str):
            value = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name}: expected a {kind.__name__}, got {value!r}") from None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"--{name}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def parse_option(name: str, value: Any) -> Any:
    """One option's value typed and checked as the command line does (ConfigError naming it)."""
    if name not in OPTION_FIELDS:
        raise ConfigError(f"unknown option --{name}")
    return _coerce(name, value)


def make_options(overrides: dict[str, Any] | None = None, preset: str | None = None) -> Options:
    """Options from defaults, then a preset, then explicit overrides; validated."""
    overrides = dict(overrides or {})
    preset = preset or overrides.get("config") or ""
    values: dict[str, Any] = {}
    if preset:
        values.update(load_preset(preset))
    values.update(overrides)
    from .methods import method_class  # methods import this module
    method = method_class(str(values.get("model", OPTION_FIELDS["model"].default)))
    values = {**method.defaults_for(values), **values}
    unknown = sorted(set(values) - set(OPTION_FIELDS))
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
    options = Options(**{k: _coerce(k, v) for k, v in values.items()})
    validate(options)
    return options


def validate(o: Options) -> None:
    name = Path(o.name)
    if not o.name.strip() or name.is_absolute() or ".." in name.parts:
        raise ConfigError(f"--name {o.name!r}: a run's name is a folder inside --checkpoints_dir (no absolute path, "
                          "no '..'); use --checkpoints_dir to choose where runs go")
    positive = ("ngf", "ndf", "batch_size", "load_size", "crop_size", "n_layers_D", "dist_timeout", "netF_nc",
                "num_patches", "nce_T")
    for name in positive:
        if getattr(o, name) <= 0:
            raise ConfigError(f"--{name} must be positive, got {getattr(o, name)}")
    if o.preprocess in ("resize_and_crop", "scale_width_and_crop") and o.crop_size > o.load_size:
        raise ConfigError(f"--crop_size {o.crop_size} is larger than --load_size {o.load_size}; "
                          "crop a region no larger than the loaded image")
    if not o.lr > 0 or not 0 <= o.beta1 < 1 or not 0 <= o.beta2 < 1:
        raise ConfigError(f"--lr must be positive and --beta1/--beta2 in [0, 1) (got --lr {o.lr}, --beta1 {o.beta1}, "
                          f"--beta2 {o.beta2})")
    if o.preprocess == "none" and o.batch_size > 1:
        raise ConfigError("--preprocess none keeps every image at its own size, so images cannot share a batch: "
                          "use --batch_size 1, or a --preprocess that crops to --crop_size")
    if o.n_epochs + o.n_epochs_decay <= 0:
        raise ConfigError("--n_epochs plus --n_epochs_decay must be at least 1")
    if o.init_epochs >= o.n_epochs + o.n_epochs_decay:
        raise ConfigError(f"--init_epochs {o.init_epochs} leaves no adversarial epochs out of "
                          f"{o.n_epochs + o.n_epochs_decay}; lower it or raise --n_epochs")
    if o.pool_size < 0 or o.num_threads < 0 or o.max_dataset_size < 0 or o.max_iters < 0 or o.init_epochs < 0:
        raise ConfigError("--pool_size, --num_threads, --max_dataset_size, --max_iters and --init_epochs cannot be "
                          "negative")
    if o.epoch != "latest" and not o.epoch.isdigit():
        raise ConfigError(f"--epoch must be 'latest' or an epoch number, got {o.epoch!r}")


def int_at_least(minimum: int, meaning: str = ""):
    """An argparse type: an int of at least `minimum` (`meaning` says what the minimum does),
    so a bad value is refused by the parser with the option's name before any work."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{f' ({meaning})' if meaning else ''}, "
                                             f"got {value}")
        return value
    parse.__name__ = f"int >= {minimum}"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def add_common_arguments(parser, device: bool = False, progress: bool = False, checkpoints_dir: bool = False) -> None:
    """The options several commands share, written once."""
    if checkpoints_dir:
        parser.add_argument("--checkpoints_dir", default="checkpoints", help="folder that holds the runs")
    if device:
        parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                            help="where to compute (auto: the first CUDA device when there is one)")
    if progress:
        parser.add_argument("--no_progress", action="store_true", help="no progress bars")


def add_option_arguments(parser, only: tuple[str, ...] | None = None) -> None:
    """Add one flag per Options field; defaults are suppressed so that only
    flags the user typed override the preset."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(Options):
        if only is not None and f.name not in only:
            continue
        if only is not None:  # a chosen few go straight into the caller's parser or group
            group = parser
        else:
            group_name = f.metadata["group"]
            group = groups.get(group_name) or groups.setdefault(group_name, parser.add_argument_group(group_name))
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if isinstance(f.default, bool):
            # Official flags are store_true switches; --no_dropout false style values come via presets.
            group.add_argument(f"--{f.name}", nargs="?", const=True, default=argparse.SUPPRESS,
                               type=lambda v, n=f.name: _coerce(n, v), metavar="BOOL", help=help_text)
        else:
            group.add_argument(f"--{f.name}", default=argparse.SUPPRESS, type=str, metavar=f.name.upper(),
                               help=help_text)


def options_from_namespace(namespace: argparse.Namespace) -> Options:
    given = {k: v for k, v in vars(namespace).items() if k in OPTION_FIELDS}
    return make_options(given)
