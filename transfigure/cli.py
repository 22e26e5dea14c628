"""The `transfigure` command: train, translate, data, evaluate, benchmark, demo."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
from pathlib import Path

from . import config
from .config import GENERATOR_KEYS


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model on your image folders",
        description="Train a model. Flags follow the official CycleGAN/pix2pix code; --config loads a preset "
                    "(built-in: cyclegan, demo) and flags typed here override it. Interrupt with Ctrl-C: the "
                    "run saves a checkpoint and resumes with --continue_train.")
    config.add_option_arguments(p)
    config.add_common_arguments(p, progress=True)
    p.set_defaults(func=_cmd_train)


# What a resumed run takes from the command line, never from its record.
_NOT_RESUMED = ("continue_train", "max_iters", "epoch", "config")


def _cmd_train(args) -> int:
    from . import checkpoint as ckpt
    from .data.registry import resolve_dataroot
    from .distributed import world_from_environment
    from .tempfiles import check_output_folder
    from .train import train

    given = {k: v for k, v in vars(args).items() if k in config.OPTION_FIELDS}
    if given.get("continue_train"):
        # `--name N --continue_train` is enough: the run's recorded options, then what was typed.
        run = Path(given.get("checkpoints_dir", config.OPTION_FIELDS["checkpoints_dir"].default)) / \
            given.get("name", config.OPTION_FIELDS["name"].default)
        recorded = {k: v for k, v in ckpt.read_options(run).items()
                    if k in config.OPTION_FIELDS and k not in _NOT_RESUMED}
        given = {**recorded, **given}
    opt = config.make_options(given)
    opt = dataclasses.replace(opt, dataroot=resolve_dataroot(opt.dataroot))
    if not opt.dataroot:
        raise config.ConfigError("--dataroot is required: the folder holding trainA/ and trainB/ "
                                 "(or train/ for --dataset_mode aligned)")
    check_output_folder(Path(opt.checkpoints_dir) / opt.name, "--checkpoints_dir")
    result = train(opt, progress=not args.no_progress)
    if world_from_environment().is_main:
        print(result.describe())
    return 0 if result.status in ("finished", "paused") else 130


def _add_eval_argument(p, whose: str) -> None:
    """One polarity wherever a generator translates: training mode unless --eval."""
    p.add_argument("--eval", action="store_true",
                   help=f"{whose} batch norm and dropout in eval mode (running statistics, no dropout); without it "
                        "they stay in training mode as in the official test script, which is what pix2pix's "
                        "published results used. No effect on instance-norm models without dropout (CycleGAN)")
    p.add_argument("--train_mode", action="store_false", dest="eval",
                   help="the default, training mode (an alias kept for older scripts)")


def _add_model_source(p) -> None:
    """Which generator: --name | --checkpoint | --pretrained, and the options that refine it."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--name", help="run name under --checkpoints_dir")
    src.add_argument("--checkpoint", help="a .ckpt, .pth or .safetensors file")
    src.add_argument("--pretrained", metavar="MODEL",
                     help="a published model by name (`transfigure models` lists them), downloaded into the cache "
                          "on first use")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="with --pretrained: a local copy of its weights (offline use)")
    config.add_common_arguments(p, checkpoints_dir=True)
    p.add_argument("--epoch", default="latest", help="'latest' or an epoch number (with --name)")
    p.add_argument("--direction", default=None, choices=["AtoB", "BtoA"],
                   help="translate the dataset's A domain into B, or B into A (default: the direction the "
                        "run was trained for; pix2pix models have only that one; a plain generator file maps "
                        "the way it was trained)")


def _generator_from_args(args, architecture: dict | None = None):
    """(LoadedGenerator, the input it expects: `pretrained.Preprocessing`) for --name,
    --checkpoint or --pretrained [--weights]."""
    from .translate import load_generator

    if args.weights and not args.pretrained:
        raise config.ConfigError("--weights goes with --pretrained (for a file of your own, use --checkpoint)")
    if args.pretrained:
        from .pretrained import get_model, load_pretrained
        return (load_pretrained(args.pretrained, args.weights, progress=not args.no_progress),
                get_model(args.pretrained).preprocessing)
    from .pretrained import PLAIN
    return load_generator(name=args.name, checkpoint=args.checkpoint, checkpoints_dir=args.checkpoints_dir,
                          epoch=args.epoch, direction=args.direction, architecture=architecture), PLAIN


def _add_translate(sub) -> None:
    from .translate import add_input_arguments

    p = sub.add_parser(
        "translate", help="translate images and videos with a trained or published generator",
        description="Translate images and videos (a file, a folder, or a glob) with a trained run (--name), a "
                    "weights file (--checkpoint: a .ckpt training state, or a plain official-layout "
                    ".pth/.safetensors generator) or a published model (--pretrained NAME). Images keep their "
                    "size unless --max_size; --tile bounds the memory for large ones. Existing outputs are kept "
                    "unless --overwrite.")
    _add_model_source(p)
    _add_eval_argument(p, "the generator's")
    add_input_arguments(p)
    p.add_argument("--max_size", type=config.int_at_least(0, "0 keeps the size"), default=0, metavar="PX",
                   help="scale images (and video frames) down so the long side is at most PX before translating "
                        "(0 = keep the size; CartoonGAN styles then resize to 450 as published)")
    p.add_argument("--batch_size", type=config.int_at_least(1), default=4,
                   help="images or video frames per batch (same-size images only)")
    p.add_argument("--compare", action="store_true",
                   help="also write input|output side by side to OUTPUT/compare/ (images; not videos)")
    config.add_common_arguments(p, device=True, progress=True)
    arch = p.add_argument_group("architecture of a plain .pth/.safetensors file without options.yaml beside it")
    config.add_option_arguments(arch, only=GENERATOR_KEYS)
    p.set_defaults(func=_cmd_translate)


def _cmd_translate(args) -> int:
    from .tempfiles import check_output_folder
    from .translate import collect_inputs, input_root, report_written, translate_files
    from .runner import RunOptions

    run = RunOptions.from_args(args)  # checks the tile options before any download
    check_output_folder(args.output)
    # A published model's inputs are checked before any download; a local model's file first.
    inputs = collect_inputs(args.input, args.recursive) if args.pretrained else None
    where = dict(overwrite=args.overwrite, progress=not args.no_progress, max_size=args.max_size,
                 root=input_root(args.input), run=run, announce=True, strict=args.strict)
    architecture = {k: getattr(args, k) for k in GENERATOR_KEYS if hasattr(args, k)}
    generator, preprocessing = _generator_from_args(args, architecture)
    inputs = inputs or collect_inputs(args.input, args.recursive)
    if preprocessing.per_image:
        from .cartoonize import cartoonize_files
        return report_written(cartoonize_files(generator.net, inputs, args.output, load_size=preprocessing.load_size,
                                               bgr=preprocessing.bgr, **where), args.output)
    summary = translate_files(generator, inputs, args.output, batch_size=args.batch_size, compare=args.compare,
                              eval_mode=args.eval, **where)
    return report_written(summary, args.output)


def _add_export(sub) -> None:
    from .export import FORMATS

    p = sub.add_parser(
        "export", help="save a generator as ONNX or TorchScript for deployment",
        description="Write a trained run (--name), a weights file (--checkpoint) or a published model (--pretrained) "
                    "as one self-contained file: float32 RGB images in [0, 1], shaped [N, 3, H, W] with any N, H "
                    "and W, in; the translation, same shape and range, out (padding for the network and the "
                    "CartoonGAN styles' BGR order happen inside). ONNX names them 'image' and 'translated'. The "
                    "file is then run at two sizes and compared with PyTorch.")
    _add_model_source(p)
    p.add_argument("--format", required=True, choices=[*FORMATS, "official"],
                   help="onnx or torchscript: one generator for deployment; official: a run's generators AND "
                        "discriminators in the reference implementation's layout (--out a folder; its "
                        "--continue_train loads them), from --name or a .ckpt --checkpoint")
    p.add_argument("--out", required=True, help="the file to write (e.g. horse2zebra.onnx); a folder for official")
    p.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    config.add_common_arguments(p, progress=True)
    p.set_defaults(func=_cmd_export)


def _cmd_export_official(args) -> int:
    from .reference_runs import export_official

    if args.pretrained:
        raise config.ConfigError("--format official needs a training run (--name, or a .ckpt --checkpoint): "
                                 "a published model has no discriminators")
    path = Path(args.checkpoint) if args.checkpoint else ckpt_state_path(args)
    state = _read_checkpoint(path)
    files = export_official(state, args.out, overwrite=args.overwrite)
    print(f"Wrote {', '.join(f.name for f in files)} and train_opt.txt to {args.out}: the reference's "
          f"`--continue_train --name <its run> --epoch latest` loads them from its checkpoints/<run>/")
    return 0


def ckpt_state_path(args) -> Path:
    from . import checkpoint as ckpt

    return ckpt.state_path(Path(args.checkpoints_dir) / args.name, args.epoch)


def _read_checkpoint(path: Path) -> dict:
    from . import checkpoint as ckpt

    if path.suffix != ".ckpt":
        raise config.ConfigError(f"--checkpoint {path}: --format official needs a training checkpoint (.ckpt); "
                                 "a .pth holds one generator, not the discriminators")
    return ckpt.load_training_state(path)


def _cmd_export(args) -> int:
    from .export import INSTALL_HINT, ExportWrapper, check_export, check_export_path, export_generator

    if args.format == "official":
        return _cmd_export_official(args)

    check_export_path(args.out, args.format, args.overwrite, args.checkpoint)  # before any download
    generator, preprocessing = _generator_from_args(args)
    net, input_nc = generator.net, generator.input_nc
    net = net.cpu().eval()
    sizes, diffs = ((64, 96), (70, 50)), []
    checkable = args.format != "onnx" or importlib.util.find_spec("onnxruntime") is not None
    reference = ExportWrapper(net, bgr=preprocessing.bgr).eval()
    out = export_generator(net, args.out, args.format, input_nc=input_nc, bgr=preprocessing.bgr,
                           overwrite=args.overwrite, verify=lambda written: diffs.append(check_export(
                               written, reference, sizes=sizes, input_nc=input_nc, format=args.format))
                           if checkable else None)
    print(f"Wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): [N, {input_nc}, H, W] images in [0, 1] in, "
          "the same shape out")
    if not checkable:
        print(f"Not checked against PyTorch: that needs onnxruntime ({INSTALL_HINT})")
        return 0
    print(f"Checked at {' and '.join(f'{h}x{w}' for h, w in sizes)}: max abs difference from PyTorch {diffs[0]:.2e}")
    return 0


def _add_import(sub) -> None:
    p = sub.add_parser(
        "import", help="carry a reference implementation run (checkpoints/NAME) over",
        description="Read a reference run folder, of pytorch-CycleGAN-and-pix2pix (cycle_gan, pix2pix) or of "
                    "contrastive-unpaired-translation (cut: CUT or FastCUT, with normG equal to normD): its "
                    "train_opt.txt and one epoch's <epoch>_net_*.pth files. It becomes a transfigure run: the "
                    "networks loaded "
                    "strictly, the options mapped (those with no counterpart listed), fresh optimizers and "
                    "schedules placed at the next epoch (the reference saves no optimizer state). Then `train "
                    "--name NAME --continue_train`, `translate --name NAME` and `evaluate run` work on it.")
    p.add_argument("run_dir", help="the reference run's folder, e.g. ../pytorch-CycleGAN-and-pix2pix/checkpoints/h2z")
    p.add_argument("--name", required=True, help="the new run's name")
    p.add_argument("--epoch", default="latest", help="which saved epoch to import (latest, or a number)")
    config.add_common_arguments(p, checkpoints_dir=True)
    p.set_defaults(func=_cmd_import)


def _cmd_import(args) -> int:
    from .reference_runs import import_run

    folder, skipped, next_epoch = import_run(args.run_dir, args.name, args.checkpoints_dir, args.epoch)
    print(f"Imported {args.run_dir} ({args.epoch}) into {folder}; training continues at epoch {next_epoch}.")
    print("The reference saves no optimizer state: Adam's moments start from zero.")
    if skipped:
        print(f"Options with no counterpart here (ignored): {', '.join(skipped)}")
    print(f"Continue with: transfigure train --name {args.name} --checkpoints_dir {args.checkpoints_dir} "
          "--continue_train")
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the published models usable with translate --pretrained",
                       description="The official CycleGAN and pix2pix generators and the CartoonGAN styles: name, "
                                   "task, architecture, source URL and licence note.")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from .pretrained import format_models

    print(format_models())
    return 0


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="make and prepare datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    s = data_sub.add_parser(
        "synth", help="write the built-in synthetic labels<->photo dataset",
        description="Write a deterministic paired dataset: label maps (A) and photos rendered from them (B), "
                    "in the unaligned layout (trainA/ trainB/ testA/ testB/), the aligned layout (train/ test/, "
                    "A|B side by side) and palette.json with the class colors.")
    s.add_argument("--task", default="labels2photo", choices=["labels2photo", "photo2cartoon"],
                   help="labels2photo: street label maps (A) and photos (B); photo2cartoon: photos (A) and flat, "
                        "outlined cartoons (B) of other scenes, with ground-truth cartoons of the test photos")
    s.add_argument("--out", required=True, help="output folder (must be new or empty)")
    s.add_argument("--size", type=config.int_at_least(16), default=64, help="image side in pixels")
    s.add_argument("--n_train", type=config.int_at_least(1), default=1000)
    s.add_argument("--n_test", type=config.int_at_least(1), default=100)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_synth)
    e = data_sub.add_parser(
        "smooth-edges", help="CartoonGAN's edge-smoothed copies of cartoon images",
        description="Blur the pixels around Canny edges (100/200, dilated 5x5) with a 5x5 Gaussian, as every "
                    "public CartoonGAN implementation does. Runs in parallel; outputs that exist are skipped, so "
                    "an interrupted run finishes the rest when run again. Put the result in DATAROOT/trainB_smooth "
                    "(training computes and caches it itself otherwise).")
    from .data.edges import add_smooth_edges_arguments, run_smooth_edges
    add_smooth_edges_arguments(e)
    e.set_defaults(func=run_smooth_edges)
    ls = data_sub.add_parser("list", help="the papers' datasets by name",
                             description="The CycleGAN and pix2pix datasets `data download` fetches: task, training "
                                         "images (as the reference documents them), what is downloaded under --root, "
                                         "terms and source. NAME_pix2pix is the pix2pix archive of a name both "
                                         "papers have.")
    ls.add_argument("--root", default="datasets", help="where datasets are downloaded")
    ls.set_defaults(func=_cmd_data_list)
    d = data_sub.add_parser(
        "download", help="download one of the papers' datasets by name",
        description="Download NAME (`transfigure data list`) from the reference's host into ROOT/NAME. An "
                    "interrupted download resumes when run again; the folder appears only once the archive "
                    "arrived whole and extracted cleanly. $TRANSFIGURE_DATASET_MIRROR replaces the host. Then "
                    "`--dataroot NAME` works in train and evaluate.")
    d.add_argument("name")
    d.add_argument("--root", default="datasets", help="where datasets are downloaded")
    config.add_common_arguments(d, progress=True)
    d.set_defaults(func=_cmd_data_download)
    c = data_sub.add_parser(
        "prepare-cityscapes", help="the Cityscapes pairs from the official archives, as the reference prepares them",
        description="From gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip (registration at "
                    "cityscapes-dataset.com; the zips or their unzipped folders): 256x256 photo|labels pairs in "
                    "train/ and test/ (from val) for pix2pix, and trainA/testA (photos) and trainB/testB (labels) "
                    "for CycleGAN, exactly as the reference's prepare_cityscapes_dataset.py writes them.")
    c.add_argument("--gtFine", required=True, help="gtFine_trainvaltest.zip or its unzipped folder")
    c.add_argument("--leftImg8bit", required=True, help="leftImg8bit_trainvaltest.zip or its unzipped folder")
    c.add_argument("--out", default="datasets/cityscapes", help="the dataset folder to make")
    config.add_common_arguments(c, progress=True)
    c.set_defaults(func=_cmd_prepare_cityscapes)


def _cmd_data_list(args) -> int:
    from .data.registry import format_list

    print(format_list(args.root))
    return 0


def _cmd_data_download(args) -> int:
    from .data.registry import download_dataset

    download_dataset(args.name, args.root, progress=not args.no_progress)
    return 0


def _cmd_prepare_cityscapes(args) -> int:
    from .data.cityscapes import prepare_cityscapes

    counts = prepare_cityscapes(args.gtFine, args.leftImg8bit, args.out, progress=not args.no_progress)
    print(f"Wrote {args.out}: " + ", ".join(f"{k} {v} pairs" for k, v in counts.items()))
    return 0


def _cmd_synth(args) -> int:
    from .data.synthetic import make_labels2photo, make_photo2cartoon

    make = make_labels2photo if args.task == "labels2photo" else make_photo2cartoon
    make(args.out, size=args.size, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    print(f"Wrote the {args.task} dataset to {args.out}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score results")
    ev_sub = p.add_subparsers(dest="evaluate_command", required=True, metavar="COMMAND")
    s = ev_sub.add_parser(
        "segmentation", help="per-pixel accuracy, class accuracy and mean IoU of label images",
        description="Score label images against ground-truth label images (files matched by name); each pixel "
                    "is mapped to the nearest palette color. Either --pred: generated label images "
                    "(photo -> labels), or --photos with --segmenter: a segmenter reads the photos (e.g. generated "
                    "by a labels -> photo model) and its labels are scored, the papers' 'FCN score'.")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--pred", help="folder of generated label images")
    src.add_argument("--photos", help="folder of photos to segment with --segmenter")
    s.add_argument("--gt", required=True, help="folder of ground-truth label images")
    s.add_argument("--palette", required=True, help="palette.json, or the synthetic dataset folder holding it")
    seg = s.add_argument_group("segmenter (with --photos)")
    seg.add_argument("--segmenter", metavar="SPEC",
                     help="a photo -> labels run of this tool (run name under --checkpoints_dir), or a TorchScript "
                          "file: input [1,3,H,W] in [-1,1], output a label image [1,3,H,W] in [-1,1] or class logits "
                          "[1,C,H,W] with C = the palette's classes")
    config.add_common_arguments(seg, checkpoints_dir=True, device=True)
    seg.add_argument("--epoch", default="latest", help="checkpoint of a run segmenter: 'latest' or an epoch number")
    seg.add_argument("--segmenter_direction", default=None, choices=["AtoB", "BtoA"],
                     help="which generator of a CycleGAN run segments (default: the direction it was trained for)")
    seg.add_argument("--segmenter_output", default="auto", choices=["auto", "image", "logits"],
                     help="how to read a TorchScript output: auto = 3 channels are a label image, others logits")
    _add_eval_argument(seg, "a run segmenter's")
    seg.add_argument("--save_labels", metavar="DIR",
                     help="keep the segmenter's label images in DIR (default: a temporary folder, removed after)")
    s.set_defaults(func=_cmd_segmentation)

    f = ev_sub.add_parser(
        "fid", help="FID and KID between two image folders (torch-fidelity's TF-exact Inception)",
        description="FID and KID of --fake against --real with torch-fidelity's Inception (comparable with "
                    "published FIDs). The weights file (weights-inception-2015-12-05-6726825d.pth, ~95 MB) comes "
                    "from --inception_weights, else torch's cache, downloaded when missing. The real folder's "
                    "features are cached and recomputed when one of its files changes.")
    f.add_argument("--real", required=True, help="folder of real images (e.g. the target domain's test set)")
    f.add_argument("--fake", required=True, help="folder of generated images")
    _add_extractor_arguments(f)
    f.add_argument("--batch_size", type=config.int_at_least(1), default=64)
    f.add_argument("--size", type=config.int_at_least(2, "pixels"), nargs=2, default=None, metavar=("H", "W"),
                   help="resize every image to H x W first (needed when a folder mixes sizes)")
    f.add_argument("--no_kid", action="store_true", help="FID only")
    f.add_argument("--no_cache", action="store_true", help="do not cache the real folder's features")
    f.add_argument("--json", default=None, metavar="FILE", help="also write the result as JSON")
    config.add_common_arguments(f, device=True, progress=True)
    f.set_defaults(func=_cmd_fid)
    _add_evaluate_run(ev_sub)


def _add_evaluate_run(ev_sub) -> None:
    r = ev_sub.add_parser(
        "run", help="translate a run's test split and measure it (FID/KID, PSNR/SSIM, segmentation)",
        description="Translates the test split of the run's dataset with its checkpoint and writes "
                    "RESULTS_DIR/NAME/metrics.json: FID and KID against the target domain and against the source "
                    "domain (content kept), PSNR/SSIM where ground-truth pairs exist, segmentation scores where "
                    "the target images are label maps. Translated images are kept and reused while the "
                    "checkpoint is unchanged.")
    r.add_argument("--name", required=True, help="the run (a folder under --checkpoints_dir)")
    config.add_common_arguments(r, checkpoints_dir=True, device=True, progress=True)
    r.add_argument("--results_dir", default="results")
    r.add_argument("--phase", default="test", help="dataset split to translate (folders <phase>A/<phase>B)")
    r.add_argument("--epoch", default="latest", help="checkpoint: 'latest' or an epoch number")
    r.add_argument("--dataroot", default=None, help="dataset folder (default: the one the run trained on)")
    r.add_argument("--palette", default=None,
                   help="palette.json (or a folder holding one) for segmentation scores; synthetic datasets "
                        "carry one")
    r.add_argument("--labels_domain", default=None, choices=["A", "B"],
                   help="which domain holds label maps (default: as palette.json says)")
    _add_extractor_arguments(r)
    r.add_argument("--no_kid", action="store_true", help="FID only")
    _add_eval_argument(r, "the generator's")
    r.set_defaults(func=_cmd_evaluate_run)


def _cmd_evaluate_run(args) -> int:
    from .data.registry import resolve_dataroot
    from .evaluate.run import evaluate_run, format_metrics, run_options
    from .devices import resolve_device

    device = resolve_device(args.device)
    extractor, weights = _extractor(args, run_options(args.name, args.checkpoints_dir).get("crop_size", 64))
    metrics = evaluate_run(args.name, checkpoints_dir=args.checkpoints_dir, results_dir=args.results_dir,
                           phase=args.phase, epoch=args.epoch, dataroot=resolve_dataroot(args.dataroot),
                           palette=args.palette,
                           labels_domain=args.labels_domain, extractor=extractor, weights_path=weights,
                           kid=not args.no_kid, eval_mode=args.eval, device=device,
                           progress=not args.no_progress)
    print(format_metrics(metrics))
    print(f"Wrote {Path(args.results_dir) / args.name / 'metrics.json'}")
    return 0


def _add_extractor_arguments(p) -> None:
    p.add_argument("--extractor", default="inception", choices=["inception", "synthetic-scenes"],
                   help="FID/KID features: torch-fidelity's Inception (comparable with papers), or a small "
                        "network trained on the synthetic scenes (offline; labelled, not comparable)")
    p.add_argument("--extractor_weights", "--inception_weights", default=None, metavar="PATH",
                   dest="extractor_weights",
                   help="the extractor's weights file: Inception's, for offline use (else torch's cache, "
                        "downloaded when missing); for synthetic-scenes the network's file, trained there (~30 s) "
                        "when missing")


def _extractor(args, image_size: int) -> tuple[str, str | None]:
    """(registered extractor name, weights path) from --extractor/--extractor_weights."""
    from .evaluate.fid import INCEPTION

    if args.extractor == "inception":
        return INCEPTION, args.extractor_weights
    from .evaluate.synthetic_features import feature_network, train_feature_net
    if not args.extractor_weights:
        raise config.ConfigError("--extractor synthetic-scenes needs --extractor_weights PATH (the network's file; "
                                 "it is trained there when missing)")
    if not Path(args.extractor_weights).is_file():
        print(f"Training the synthetic-scene feature network into {args.extractor_weights} ({image_size} px)")
        train_feature_net(args.extractor_weights, size=image_size, progress=not args.no_progress)
    return feature_network().name, args.extractor_weights


def _cmd_fid(args) -> int:
    import json

    from .evaluate.fid import fid_kid, metric_label
    from .devices import resolve_device

    device = resolve_device(args.device)
    extractor, weights = _extractor(args, 64)
    result = fid_kid(args.real, args.fake, extractor=extractor, weights_path=weights, kid=not args.no_kid,
                     batch_size=args.batch_size, device=device, size=tuple(args.size) if args.size else None,
                     cache_real=not args.no_cache, progress=not args.no_progress)
    print(f"{result['label']} {result['fid']:.3f} ({result['n_fake']} generated vs {result['n_real']} real images)")
    if "kid_mean" in result:
        print(f"{metric_label(extractor, 'KID')} {result['kid_mean']:.5f} ± {result['kid_std']:.5f}")
    if args.json:
        from .checkpoint import atomic_write_text
        atomic_write_text(json.dumps(result, indent=2) + "\n", Path(args.json))
        print(f"Wrote {args.json}")
    return 0


def _cmd_segmentation(args) -> int:
    import tempfile

    from .data.synthetic import load_palette
    from .evaluate.segmentation import format_scores, score_label_folders

    _, colors = load_palette(args.palette)
    if args.pred is not None:
        if args.segmenter:
            raise config.ConfigError("--segmenter reads photos: give --photos instead of --pred")
        print(format_scores(score_label_folders(args.pred, args.gt, colors)))
        return 0
    if not args.segmenter:
        raise config.ConfigError("--photos needs --segmenter SPEC (a run name or a TorchScript file)")
    from .evaluate.segmenter import load_segmenter, score_photos
    from .devices import resolve_device

    segmenter = load_segmenter(args.segmenter, checkpoints_dir=args.checkpoints_dir, epoch=args.epoch,
                               direction=args.segmenter_direction, output=args.segmenter_output,
                               eval_mode=args.eval)
    device = resolve_device(args.device)
    if args.save_labels:
        scores = score_photos(segmenter, args.photos, args.gt, colors, args.save_labels, device=device)
        print(f"Segmenter labels in {args.save_labels}")
    else:
        with tempfile.TemporaryDirectory(prefix="transfigure_seg_") as tmp:
            scores = score_photos(segmenter, args.photos, args.gt, colors, tmp, device=device)
    print(format_scores(scores))
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report", help="compare runs side by side: metrics, sample grids, loss curves, settings",
        description="Writes OUT/index.html, OUT/table.md and OUT/table.csv for the runs: their metrics from "
                    "`evaluate run` (best value in bold; missing ones as — with the reason), grids of the same test "
                    "inputs through every run, loss curves, training time and the settings that differ.")
    p.add_argument("--runs", nargs="+", required=True, metavar="NAME", help="runs to compare")
    p.add_argument("--out", required=True, help="folder for the report (new, empty, or an earlier report's)")
    config.add_common_arguments(p, checkpoints_dir=True)
    p.add_argument("--results_dir", default="results", help="where `evaluate run` wrote metrics.json")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from .evaluate.report import write_report

    page = write_report(args.runs, args.out, args.checkpoints_dir, args.results_dir)
    print(f"Report: {page}")
    return 0


def _add_benchmark_arguments(p, module: str, seeds: int, threads: str, min_size: int) -> None:
    """The options every benchmark has."""
    p.add_argument("--out", required=True, help="folder for data, runs and tables (new, empty, or a benchmark's)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="fit the one iteration count to this many seconds of training for all methods and seeds "
                        "together, timed on this machine (default: a fixed count per benchmark, "
                        f"transfigure.benchmarks.{module}.DEFAULT_ITERATIONS, so every machine makes the same table)")
    p.add_argument("--seeds", type=config.int_at_least(1), default=seeds, help="training seeds 0 .. N-1 per method")
    p.add_argument("--iterations", type=config.int_at_least(1), default=None,
                   help="iterations per run (overrides --budget)")
    p.add_argument("--size", type=config.int_at_least(min_size), default=64, help="image side in pixels")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="a training option for every run, e.g. --set ngf=32 (repeatable); part of the settings")
    p.add_argument("--threads", type=config.int_at_least(1), default=None,
                   help=f"torch CPU threads (default: {threads})")
    config.add_common_arguments(p, progress=True)


def _add_benchmark(sub) -> None:
    from .translate import DEFAULT_TILE_OVERLAP

    p = sub.add_parser("benchmark",
                       help="reproduce the papers' comparisons on built-in tasks; measure tiling memory and speed")
    b_sub = p.add_subparsers(dest="benchmark_command", required=True, metavar="COMMAND")
    a = b_sub.add_parser(
        "ablation", help="the CycleGAN paper's ablations and baselines, and CUT/FastCUT, trained under one budget",
        description="Writes the synthetic dataset, trains pix2pix, CycleGAN, cycle alone, GAN alone, GAN + "
                    "forward/backward cycle, pixel loss + GAN, feature loss + GAN, CUT and FastCUT with the same data, "
                    "networks, iteration count and seeds, scores photo -> labels and labels -> photo (FCN score), "
                    "measures every method's time per iteration and peak memory, and writes OUT/table.md, "
                    "OUT/table.csv and OUT/index.html. Run the same command again to continue an interrupted "
                    "benchmark: finished runs are reused.")
    a.add_argument("--task", default="labels2photo", choices=["labels2photo"])
    _add_benchmark_arguments(a, "ablation", seeds=2, threads="1 up to --size 64, where a second thread buys nothing "
                                                               "for these batch-1 steps; torch's default above",
                             min_size=24)
    a.add_argument("--n_train", type=config.int_at_least(1), default=1000)
    a.add_argument("--n_test", type=config.int_at_least(1), default=100)
    a.add_argument("--feature_net", default="vgg16:relu3_3", help="network:layer of the feature-loss baseline")
    a.add_argument("--feature_weights", default="",
                   help="local ImageNet weights file for --feature_net (without it, torchvision's cache)")
    a.add_argument("--only", nargs="+", metavar="METHOD", default=None,
                   help="train only these methods (pix2pix always: it is the segmenter): cyclegan cycle_alone "
                        "gan_alone gan_forward gan_backward pixel_gan feature_gan cut fastcut")
    a.add_argument("--costs_only", action="store_true",
                   help="only measure each method's time per iteration and peak memory (OUT/costs.md), train "
                        "nothing: e.g. at the papers' size with --size 256 --set netG=resnet_9blocks --set ngf=64 "
                        "--set ndf=64 --n_train 8")
    a.set_defaults(func=_cmd_benchmark)

    c = b_sub.add_parser(
        "cartoon", help="CartoonGAN, improved CartoonGAN and CycleGAN (+ init phase, + edge smoothing) compared",
        description="Writes the synthetic photo -> cartoon dataset, trains CartoonGAN, the improved CartoonGAN, "
                    "CycleGAN, CycleGAN + init phase and CycleGAN + edge smoothing with the same data, sizes and "
                    "iteration count, and scores the test photos' cartoons against their ground truth (edge F1, "
                    "color error) and the training domains (FID/KID with a feature network trained on synthetic "
                    "scenes, labelled FID-syn: not Inception). Writes OUT/table.md, OUT/table.csv, OUT/index.html "
                    "and OUT/grid.png. It reports; it asserts no ordering. Run the same command again to continue "
                    "an interrupted benchmark.")
    _add_benchmark_arguments(c, "cartoon", seeds=1, threads="torch's default", min_size=32)
    c.add_argument("--n_train", type=config.int_at_least(2, "FID needs two images"), default=400,
                   help="training photos (and as many cartoons)")
    c.add_argument("--n_test", type=config.int_at_least(2, "FID needs two images"), default=200,
                   help="test photos with ground-truth cartoons")
    c.add_argument("--content_weights", default="auto", choices=["auto", "imagenet", "synthetic", "random"],
                   help="content networks: ImageNet weights (torchvision's cache or download); synthetic: a small "
                        "network the benchmark trains to label synthetic scenes; random: the ImageNet architectures "
                        "with fixed random weights (content is lost); auto: ImageNet when loadable, else synthetic "
                        "(the table says which)")
    c.add_argument("--only", nargs="+", metavar="METHOD", default=None,
                   help="train only these methods: cartoongan improved cyclegan cyclegan_init cyclegan_edges")
    c.add_argument("--feature_steps", type=config.int_at_least(1), default=600,
                   help="training steps of the evaluation feature network")
    c.add_argument("--content_steps", type=config.int_at_least(1), default=500,
                   help="training steps of the content network trained on synthetic scenes (used offline)")
    c.set_defaults(func=_cmd_benchmark_cartoon)

    t = b_sub.add_parser(
        "tiling", help="peak memory of cartoonizing a large photo in tiles vs whole",
        description="Cartoonizes one photo resized to --size in tiles, and at --whole_sizes without tiles, each in "
                    "its own process, and reports each process's peak resident memory and time in OUT/table.md "
                    "and OUT/results.json.")
    t.add_argument("--out", default="results/tiling_bench", help="folder for inputs, outputs and the table")
    _add_benchmark_photo_arguments(t)
    t.add_argument("--size", default="4000x3000", help="size of the tiled case, WIDTHxHEIGHT")
    t.add_argument("--tile", type=int, default=512)
    t.add_argument("--tile_overlap", type=int, default=DEFAULT_TILE_OVERLAP)
    t.add_argument("--whole_sizes", nargs="*", default=["1000x750", "2000x1500"],
                   help="sizes cartoonized whole, for comparison (memory grows with the pixels)")
    t.set_defaults(func=_cmd_benchmark_tiling)
    _add_benchmark_speed(b_sub)
    g = b_sub.add_parser(
        "scaling", help="training throughput with 1, 2, ... processes (torchrun, one thread each)",
        description="Runs the same training as a torchrun job with each --processes count, one CPU thread per "
                    "process and the same per-process batch, and reports iterations/s, images/s and the speed-up "
                    "in images/s over one process in OUT/table.md and OUT/results.json (times: the training step, "
                    "including the gradient all-reduce, after --warmup iterations).")
    g.add_argument("--out", default="results/scaling", help="folder for the data, runs and the table")
    g.add_argument("--model", default="cycle_gan", choices=["cycle_gan", "pix2pix"])
    g.add_argument("--size", type=config.int_at_least(32), default=64, help="training image size")
    g.add_argument("--processes", type=config.int_at_least(1), nargs="+", default=[1, 2])
    g.add_argument("--batch_size", type=config.int_at_least(1), default=1, help="per process")
    g.add_argument("--steps", type=config.int_at_least(3), default=12, help="iterations per job, warm-up included")
    g.add_argument("--warmup", type=config.int_at_least(1), default=2)
    config.add_common_arguments(g, progress=True)
    g.set_defaults(func=_cmd_benchmark_scaling)


def _add_benchmark_photo_arguments(p) -> None:
    """The published style and the photo a benchmark cartoonizes."""
    from .cartoonize import STYLES

    p.add_argument("--style", default="hayao", type=str.lower, choices=list(STYLES))
    p.add_argument("--weights", default=None, help="local weights of the style (as cartoonize --weights)")
    p.add_argument("--photo", default=None, help="the photo to resize (default: a synthetic street scene)")


def _add_benchmark_speed(b_sub) -> None:
    from .benchmarks.speed import MODELS, TRAIN_MODES, TRANSLATE_MODES

    s = b_sub.add_parser(
        "speed", help="seconds per training iteration and per translated image, for every way of running",
        description="Times one training iteration of --model at --size, and the published --style on one photo "
                    "at --translate_size, in each mode (precision x backend x memory order), each in its own "
                    "process after warm-up. Writes OUT/table.md (README-ready) and OUT/results.json: time, peak "
                    "memory, the ratio to fp32 eager PyTorch, the output's PSNR against it, and the CPU's name and "
                    "flags (or the GPU's name). By default, the modes this hardware runs natively (bf16 only with "
                    "avx512_bf16/amx_bf16 or on a GPU that has it).")
    s.add_argument("--out", default="results/speed", help="folder for the inputs, outputs and the table")
    s.add_argument("--model", default="cycle_gan", choices=list(MODELS), help="the method whose training step is timed")
    s.add_argument("--size", type=config.int_at_least(32), default=256, help="training image size")
    s.add_argument("--train_modes", nargs="*", default=None, metavar="MODE",
                   help=f"training modes (none: skip training): {', '.join(repr(m) for m in TRAIN_MODES)}")
    s.add_argument("--translate_modes", nargs="*", default=None, metavar="MODE",
                   help=f"translation modes (none: skip): {', '.join(repr(m) for m in TRANSLATE_MODES)}")
    _add_benchmark_photo_arguments(s)
    s.add_argument("--translate_size", default="1024x768", help="size the photo is brought to, WIDTHxHEIGHT")
    s.add_argument("--warmup", type=config.int_at_least(0), default=1, help="untimed iterations first")
    s.add_argument("--steps", type=config.int_at_least(1), default=3,
                   help="timed training iterations (translation: one fewer, at least one)")
    config.add_common_arguments(s, device=True)
    s.set_defaults(func=_cmd_benchmark_speed)


def _cmd_benchmark_speed(args) -> int:
    from .benchmarks.speed import run_speed
    from .benchmarks.tiling import parse_size

    run_speed(args.out, args.model, args.size, args.photo, args.style, args.weights, parse_size(args.translate_size),
              args.train_modes, args.translate_modes, args.warmup, args.steps, args.device)
    return 0


def _cmd_benchmark_scaling(args) -> int:
    from .benchmarks.scaling import run_scaling

    if args.warmup >= args.steps:
        raise config.ConfigError(f"--warmup {args.warmup} leaves no timed iterations of --steps {args.steps}")
    run_scaling(args.out, args.model, args.size, tuple(args.processes), args.batch_size, args.steps, args.warmup,
                progress=not args.no_progress)
    return 0


def _cmd_benchmark_tiling(args) -> int:
    from .benchmarks.tiling import parse_size, run_tiling
    from .nets.tiling import check_tiling

    check_tiling(args.tile, args.tile_overlap)
    if args.tile == 0:
        raise config.ConfigError("--tile must be positive: this benchmark measures tiling")
    run_tiling(args.out, args.style, args.weights, parse_size(args.size), args.tile, args.tile_overlap,
               [parse_size(s) for s in args.whole_sizes], args.photo)
    return 0


def _parse_overrides(items: list[str]) -> dict:
    """--set KEY=VALUE options of the benchmarks, checked and typed like training options."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in config.OPTION_FIELDS:
            raise config.ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY a training option")
        overrides[key] = config._coerce(key, value)
    return overrides


def _cmd_benchmark_cartoon(args) -> int:
    from .benchmarks.cartoon import run_cartoon

    return _run_benchmark(args, lambda: run_cartoon(
        args.out, budget_s=args.budget, seeds=args.seeds,
        size=args.size, n_train=args.n_train, n_test=args.n_test, iterations=args.iterations,
        content_weights=args.content_weights, overrides=_parse_overrides(args.overrides),
        feature_steps=args.feature_steps, content_steps=args.content_steps, only=args.only, threads=args.threads, progress=not args.no_progress))


def _run_benchmark(args, run) -> int:
    """0 when the benchmark finished; 130 when interrupted (a rerun continues it)."""
    try:
        result = run()
    except KeyboardInterrupt:
        print(f"\nStopped. Run the same command again to continue: finished runs in {args.out} are reused and an "
              "interrupted one resumes from its last checkpoint.", file=sys.stderr)
        return 130
    return 0 if result.complete else 130


def _cmd_benchmark(args) -> int:
    from .benchmarks.ablation import run_ablation

    overrides = _parse_overrides(args.overrides)
    return _run_benchmark(args, lambda: run_ablation(
        args.out, task=args.task, budget_s=args.budget,
        seeds=args.seeds, size=args.size, n_train=args.n_train, n_test=args.n_test, iterations=args.iterations,
        overrides=overrides, feature_net=args.feature_net, feature_weights=args.feature_weights, only=args.only,
        threads=args.threads, progress=not args.no_progress, costs_only=args.costs_only))


def _add_cartoonize(sub) -> None:
    from .cartoonize import add_cartoonize_arguments, run_cartoonize

    p = sub.add_parser(
        "cartoonize", help="cartoonize photos with a published CartoonGAN style",
        description="Apply a published CartoonGAN generator (hayao, hosoda, paprika, shinkai) with the authors' "
                    "preprocessing: the long side resized to --load_size (bicubic), BGR, [-1, 1]. Weights come "
                    "from --weights, else the cache ($TRANSFIGURE_CACHE or ~/.cache/transfigure), downloaded "
                    "when missing.")
    add_cartoonize_arguments(p)
    p.set_defaults(func=run_cartoonize)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="synthetic data -> train a small CycleGAN -> translate -> HTML page",
        description="The whole pipeline in a few minutes on a CPU: writes the synthetic labels<->photo "
                    "dataset, trains a small CycleGAN, translates the test set and writes "
                    "RESULTS_DIR/index.html with grids, the loss curve and photo->label scores of the "
                    "trained and the untrained generator. A finished demo run is reused; an interrupted "
                    "one resumes.")
    p.add_argument("--dataroot", default="datasets/demo_labels2photo")
    p.add_argument("--name", default="demo")
    p.add_argument("--results_dir", default="results/demo")
    p.add_argument("--n_train", type=config.int_at_least(1), default=1000)
    p.add_argument("--n_test", type=config.int_at_least(1), default=100)
    config.add_common_arguments(p, checkpoints_dir=True, progress=True)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    page = run_demo(dataroot=args.dataroot, name=args.name, checkpoints_dir=args.checkpoints_dir,
                    results_dir=args.results_dir, n_train=args.n_train, n_test=args.n_test,
                    progress=not args.no_progress)
    if page is None:
        print("The demo's training was interrupted; run `transfigure demo` again to resume it.")
        return 130
    print(f"Demo page: {page}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transfigure",
        description="Image-to-image translation with GANs (CycleGAN, pix2pix, CartoonGAN). Run `transfigure COMMAND --help` for a "
                    "command's options; `transfigure demo` shows the whole pipeline in minutes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .studio.commands import add_commands as _add_studio

    for add in (_add_train, _add_translate, _add_export, _add_models, _add_data, _add_evaluate, _add_report,
                _add_benchmark, _add_cartoonize, _add_demo, _add_studio, _add_import):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command. Expected errors (the project's own, and files that are missing or in
    the way) print one line and return 2; anything else is a bug: its traceback shows."""
    from .errors import TransfigureError

    args = build_parser().parse_args(argv)
    expected = (TransfigureError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                NotADirectoryError)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit: a reader that stopped early is handled below
        return code
    except expected as e:
        if os.environ.get("TRANSFIGURE_DEBUG"):
            raise
        print(f"transfigure {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output stopped (`transfigure models | head`): end quietly, as `ls | head` does.
        # Python would report the failed flush of stdout at exit, so it goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command ended that way
    except KeyboardInterrupt:
        if os.environ.get("TRANSFIGURE_DEBUG"):
            raise
        # Every writer renames finished files into place: what exists is whole.
        print(f"transfigure {args.command}: stopped; the outputs written so far are complete; run the same "
              "command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
