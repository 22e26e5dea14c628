"""The `transfigure` command: train, translate, data, evaluate, demo."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import config


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model on your image folders",
        description="Train a model. Flags follow the official CycleGAN/pix2pix code; --config loads a preset "
                    "(built-in: cyclegan, demo) and flags typed here override it. Interrupt with Ctrl-C: the "
                    "run saves a checkpoint and resumes with --continue_train.")
    config.add_option_arguments(p)
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .train import train

    opt = config.options_from_namespace(args)
    if not opt.dataroot:
        raise config.ConfigError("--dataroot is required: the folder holding trainA/ and trainB/ "
                                 "(or train/ for --dataset_mode aligned)")
    result = train(opt, progress=not args.no_progress)
    if result.status == "finished":
        print(f"Finished {result.total_steps} iterations in {result.elapsed_s:.0f} s; "
              f"checkpoints in {result.run_dir}")
    return 0 if result.status in ("finished", "paused") else 130


def _add_translate(sub) -> None:
    p = sub.add_parser(
        "translate", help="translate images with a trained generator",
        description="Translate one image or a folder of images with a trained run (--name) or a weights file "
                    "(--checkpoint: a .ckpt training state, or a plain official-layout .pth/.safetensors "
                    "generator). Images keep their size. Existing outputs are kept unless --overwrite.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--name", help="run name under --checkpoints_dir")
    src.add_argument("--checkpoint", help="a .ckpt, .pth or .safetensors file")
    p.add_argument("--checkpoints_dir", default="checkpoints")
    p.add_argument("--epoch", default="latest", help="'latest' or an epoch number (with --name)")
    p.add_argument("--direction", default=None, choices=["AtoB", "BtoA"],
                   help="translate the dataset's A domain into B, or B into A (default: the direction the "
                        "run was trained for; pix2pix models have only that one; a plain generator file maps "
                        "the way it was trained)")
    p.add_argument("--eval", action="store_true",
                   help="batch norm and dropout in eval mode (running statistics, no dropout); without it they "
                        "stay in training mode as in the official test script, which is what pix2pix's "
                        "published results used. No effect on instance-norm models without dropout (CycleGAN)")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="folder for the translated images (PNG)")
    p.add_argument("--batch_size", type=int, default=4, help="images per batch (same-size images only)")
    p.add_argument("--compare", action="store_true", help="also write input|output side by side to OUTPUT/compare/")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no_progress", action="store_true")
    arch = p.add_argument_group("architecture of a plain .pth/.safetensors file without options.yaml beside it")
    config.add_option_arguments(arch, only=("netG", "ngf", "norm", "input_nc", "output_nc", "no_dropout"))
    p.set_defaults(func=_cmd_translate)


def _cmd_translate(args) -> int:
    from .translate import collect_inputs, load_generator, translate_files
    from .train import resolve_device

    if args.batch_size < 1:
        raise config.ConfigError("--batch_size must be at least 1")
    architecture = {k: getattr(args, k) for k in ("netG", "ngf", "norm", "input_nc", "output_nc", "no_dropout")
                    if hasattr(args, k)}
    generator = load_generator(name=args.name, checkpoint=args.checkpoint, checkpoints_dir=args.checkpoints_dir,
                               epoch=args.epoch, direction=args.direction, architecture=architecture)
    inputs = collect_inputs(args.input)
    device = resolve_device(config.make_options({"device": args.device}))
    summary = translate_files(generator, inputs, args.output, device=device, batch_size=args.batch_size,
                              compare=args.compare, overwrite=args.overwrite, progress=not args.no_progress,
                              eval_mode=args.eval)
    print(f"Wrote {len(summary.written)} image(s) to {args.output}")
    if summary.skipped_existing:
        print(f"Kept {len(summary.skipped_existing)} existing output(s); use --overwrite to replace them")
    return 0


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="make and prepare datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    s = data_sub.add_parser(
        "synth", help="write the built-in synthetic labels<->photo dataset",
        description="Write a deterministic paired dataset: label maps (A) and photos rendered from them (B), "
                    "in the unaligned layout (trainA/ trainB/ testA/ testB/), the aligned layout (train/ test/, "
                    "A|B side by side) and palette.json with the class colors.")
    s.add_argument("--task", default="labels2photo", choices=["labels2photo"])
    s.add_argument("--out", required=True, help="output folder (must be new or empty)")
    s.add_argument("--size", type=int, default=64, help="image side in pixels")
    s.add_argument("--n_train", type=int, default=1000)
    s.add_argument("--n_test", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_synth)


def _cmd_synth(args) -> int:
    from .data.synthetic import make_labels2photo

    if args.size < 16 or args.n_train < 1 or args.n_test < 1:
        raise config.ConfigError("--size must be at least 16, --n_train and --n_test at least 1")
    make_labels2photo(args.out, size=args.size, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    print(f"Wrote the {args.task} dataset to {args.out}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score results")
    ev_sub = p.add_subparsers(dest="evaluate_command", required=True, metavar="COMMAND")
    s = ev_sub.add_parser(
        "segmentation", help="per-pixel accuracy, class accuracy and mean IoU of label images",
        description="Score generated label images against ground-truth label images (files matched by name). "
                    "Each pixel is mapped to the nearest palette color.")
    s.add_argument("--pred", required=True, help="folder of generated label images")
    s.add_argument("--gt", required=True, help="folder of ground-truth label images")
    s.add_argument("--palette", required=True, help="palette.json, or the synthetic dataset folder holding it")
    s.set_defaults(func=_cmd_segmentation)


def _cmd_segmentation(args) -> int:
    from .data.synthetic import load_palette
    from .evaluate.segmentation import format_scores, score_label_folders

    _, colors = load_palette(args.palette)
    print(format_scores(score_label_folders(args.pred, args.gt, colors)))
    return 0


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
    p.add_argument("--checkpoints_dir", default="checkpoints")
    p.add_argument("--results_dir", default="results/demo")
    p.add_argument("--n_train", type=int, default=1000)
    p.add_argument("--n_test", type=int, default=100)
    p.add_argument("--no_progress", action="store_true")
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
        description="Image-to-image translation with GANs (CycleGAN). Run `transfigure COMMAND --help` for a "
                    "command's options; `transfigure demo` shows the whole pipeline in minutes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_translate, _add_data, _add_evaluate, _add_demo):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .data.images import DatasetFolderError, ImageLoadError

    args = build_parser().parse_args(argv)
    expected = (config.ConfigError, CheckpointError, ImageLoadError, DatasetFolderError, FileNotFoundError,
                FileExistsError, ValueError, RuntimeError, FloatingPointError)
    try:
        return args.func(args)
    except expected as e:
        if os.environ.get("TRANSFIGURE_DEBUG"):
            raise
        print(f"transfigure {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
