"""The ``medical-denoise`` command: denoise files with the shipped models, evaluate, train, find the bundle.

Every run sub-command executes the bundle's own configs with :class:`monai.bundle.ConfigWorkflow`, exactly as
``python -m monai.bundle run <id> --config_file "[...]" --bundle_root "$(medical-denoise bundle-path)"`` would:

* ``denoise INPUT OUTPUT_DIR`` runs ``inference`` of ``train.yaml`` + ``inference.yaml``;
* ``evaluate`` runs ``evaluating`` of ``train.yaml`` [+ ``--config`` files] + ``evaluate.yaml``;
* ``train`` runs ``training`` of ``train.yaml`` [+ ``--config`` files].

Other ``--key value`` pairs set bundle config ids (``--num_epochs 5``, ``--self_ensemble False``); a key the
configs do not define is refused, so a typo is not silently ignored. ``evaluate`` and ``train`` write their runs
under ``./runs`` of the working folder, never inside the installed package.

User errors (missing or corrupt input, read-only output folder, unknown option, missing extra) are printed on
one line with a non-zero exit status; ``--debug`` shows the full traceback.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from medical_denoise.atomic import check_writable_dir
from medical_denoise.bundle import BUNDLE_NAME, bundle_config_file, bundle_metadata, bundle_path
from medical_denoise.errors import UsageError, user_message

__all__ = ["UsageError", "build_parser", "check_writable_dir", "main", "parse_overrides"]

PROG = "medical-denoise"
MODELS = ("auto", "dermoscopy", "clinical", "ct", "mr")
# run id and the configs merged after train.yaml (and after --config files) of each run sub-command
RUNS = {"denoise": ("inference", ["inference"]), "evaluate": ("evaluating", ["evaluate"]), "train": ("training", [])}
RUN_FOLDERS = {
    "evaluate": "Reads runs/train/checkpoints/model.pt (or --checkpoint PATH) and writes runs/eval, in the working "
    "folder.",
    "train": "Writes runs/train in the working folder (checkpoints, TensorBoard logs, images, datalist.json).",
}
# config values that put a run inside the bundle folder; the command moves them to ./runs of the working folder
_RUNS_IN_BUNDLE = re.compile(r"@bundle_root\s*\+\s*(['\"])/runs/")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (sub-commands ``denoise``, ``evaluate``, ``train``, ``bundle-path``)."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Denoise medical images and photographs with the gan_denoise MONAI bundle.",
        epilog=f"'{PROG} COMMAND --help' describes a command.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="store_true", help="print package, bundle, MONAI and PyTorch versions")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    passthrough = "Other --key value pairs set bundle config ids, e.g. --self_ensemble False."

    d = sub.add_parser(
        "denoise",
        parents=[debug],
        allow_abbrev=False,
        help="denoise a file or folder into OUTPUT_DIR (same names and formats)",
        description="Denoise PNG/JPEG/TIFF, NIfTI or DICOM files with the shipped models. Inputs stay untouched; "
        "outputs keep format and geometry (JPEG -> lossless PNG).",
        epilog=passthrough,
    )
    d.add_argument("input", metavar="INPUT", help="file, DICOM series folder, or folder of files")
    d.add_argument("output_dir", metavar="OUTPUT_DIR", help="destination folder (created if missing)")
    d.add_argument(
        "--model",
        choices=MODELS,
        metavar="MODEL",
        help="auto (default: RGB -> dermoscopy, grayscale -> clinical), dermoscopy, clinical, ct or mr",
    )
    d.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    d.add_argument("--checkpoint", metavar="PATH", help="weights of --model instead of the shipped ones")
    d.add_argument("--device", help="torch device, e.g. cuda or cpu (default: cuda if available)")

    for name, run_help in (("evaluate", "score a trained generator on held-out images"), ("train", "train the GAN")):
        run_id, _ = RUNS[name]
        p = sub.add_parser(
            name,
            parents=[debug],
            allow_abbrev=False,
            help=f"{run_help} (the bundle's '{run_id}')",
            description=f"{run_help[0].upper()}{run_help[1:]}: the bundle's '{run_id}'. {RUN_FOLDERS[name]}",
            epilog=passthrough
            + f" Example: medical-denoise {name} --dataset_dir /data/HAM10000"
            + (" --num_epochs 400" if name == "train" else ""),
        )
        p.add_argument(
            "--config",
            action="append",
            default=[],
            metavar="NAME",
            help="bundle config merged after train.yaml: clinical, sr, deblur or a file (repeatable)",
        )
        p.add_argument("--device", help="torch device, e.g. cuda or cpu (default: cuda if available)")

    sub.add_parser("bundle-path", parents=[debug], help="print the installed bundle's folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        with warnings.catch_warnings():
            if not debug:
                # the config machinery's warnings speak to bundle authors (deprecated keys, trust notes), not to users
                warnings.filterwarnings("ignore", module=r"monai\.bundle")
            return _dispatch(parser, args, list(extra))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (any error: one line for the user, the traceback only with --debug)
        if debug:
            traceback.print_exc()
        _report(e, debug)
        return 2 if isinstance(e, UsageError) else 1


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> int:
    if args.version:
        print(version_text())
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "bundle-path":
        if extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        print(bundle_path())
        return 0
    overrides = parse_overrides(extra)
    if args.command == "denoise":
        return _denoise(args, overrides)
    return _run_named(args.command, args, overrides)


def version_text() -> str:
    """Package, bundle, MONAI and PyTorch versions, one per line (no heavy imports)."""
    from medical_denoise import __version__

    return "\n".join(
        (
            f"{PROG} {__version__}",
            f"{BUNDLE_NAME} bundle {bundle_metadata().get('version', '?')} ({bundle_path()})",
            f"MONAI {_dist_version('monai')}",
            f"PyTorch {_dist_version('torch')}",
        )
    )


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def parse_overrides(tokens: Sequence[str]) -> dict[str, Any]:
    """``["--key", "value", "--other=1"]`` -> ``{"key": "value", "other": 1}``; values as Python literals.

    A value that is not a Python literal stays a string, except ``true``/``false``/``null``/``none`` in any case,
    so ``--self_ensemble false`` means False (MONAI's own command line would keep the string ``"false"``).

    Args:
        tokens: what the sub-command's own options left over.

    Raises:
        UsageError: a token that is not ``--key``, or a key without a value.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise UsageError(f"unexpected argument {token!r} (bundle settings go as --key value)")
        key, sep, value = token[2:].partition("=")
        if not sep:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise UsageError(f"--{key} needs a value")
            i += 1
            value = tokens[i]
        out[key] = _literal(value)
        i += 1
    return out


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        words = {"true": True, "false": False, "null": None, "none": None}
        return words.get(text.strip().lower(), text)


def _denoise(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    source = Path(args.input).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist.")
    output_dir = Path(args.output_dir).expanduser()
    check_writable_dir(output_dir)
    overrides.update(input=str(source), output_dir=str(output_dir))
    if args.model is not None:  # the bundle's inference.yaml defaults to auto
        overrides["model"] = args.model
    if args.overwrite:
        overrides["overwrite"] = True
    if args.checkpoint is not None:
        checkpoint = Path(args.checkpoint).expanduser()
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{checkpoint} (--checkpoint) does not exist.")
        # auto and dermoscopy: the photo model's weights; grayscale weights under auto: --clinical_checkpoint PATH
        key = "clinical_checkpoint" if args.model in ("clinical", "ct", "mr") else "checkpoint"
        overrides[key] = str(checkpoint)
    _set_device(overrides, args.device)
    with _quiet_logging():
        results = run_bundle("denoise", overrides)
    written = [p for p in _flatten(results) if isinstance(p, (str, os.PathLike))]
    print(f"{len(written)} file(s) written to {output_dir}" if written else f"outputs are in {output_dir}")
    return 0


def _run_named(command: str, args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    _set_device(overrides, args.device)
    run_bundle(command, overrides, extra_configs=args.config, runs_dir=Path.cwd() / "runs")
    return 0


def run_bundle(
    command: str,
    overrides: dict[str, Any],
    extra_configs: Sequence[str] = (),
    runs_dir: Path | None = None,
    bundle_dir: str | Path | None = None,
) -> list[Any]:
    """Run the bundle's run id of ``command`` with its configs, as ``python -m monai.bundle run`` would.

    Args:
        command: ``denoise``, ``evaluate`` or ``train``.
        overrides: config ids to set (each must exist in the merged configs).
        extra_configs: config names or files merged after ``train.yaml``.
        runs_dir: where ``<bundle_root>/runs/...`` defaults go instead (None: leave them in the bundle).
        bundle_dir: the bundle folder (default: :func:`~medical_denoise.bundle.bundle_path`).

    Returns:
        what the run id's expressions returned (for ``denoise``: the written files).

    Raises:
        UsageError: an override names a config id that does not exist.
    """
    from monai.bundle import ConfigParser, ConfigWorkflow

    root = Path(bundle_dir or bundle_path())
    run_id, tail = RUNS[command]
    files = [root / "configs" / "train.yaml"]
    files += [bundle_config_file(c, root) for c in extra_configs] + [root / "configs" / f"{t}.yaml" for t in tail]
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    _check_keys(parser, overrides)
    if runs_dir is not None:
        overrides = {**_runs_overrides(parser, runs_dir, overrides), **overrides}
        print(f"runs go to {runs_dir}", file=sys.stderr)
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False if command == "denoise" else str(root / "configs" / "logging.conf"),
        run_id=run_id,
        bundle_root=str(root),
        **overrides,
    )
    workflow.initialize()
    results = workflow.run()
    workflow.finalize()
    return results


def _check_keys(parser: Any, overrides: dict[str, Any]) -> None:
    known = [k for k in parser.get() if isinstance(k, str)]
    for key in overrides:
        if key == "bundle_root":
            raise UsageError("--bundle_root: this command runs the installed bundle; use python -m monai.bundle")
        if key in parser:
            continue
        close = difflib.get_close_matches(key.split("#")[0], known, n=3)
        hint = f"; did you mean {', '.join('--' + c for c in close)}?" if close else ""
        raise UsageError(f"--{key}: the bundle's configs have no such setting{hint}")


def _runs_overrides(parser: Any, runs_dir: Path, given: dict[str, Any]) -> dict[str, Any]:
    """Top-level config values of the form ``$@bundle_root + '/runs/...'``, rewritten to lie under ``runs_dir``."""
    base = repr(str(runs_dir.parent))
    out = {}
    for key, value in parser.get().items():
        if key not in given and isinstance(value, str) and _RUNS_IN_BUNDLE.search(value):
            out[key] = _RUNS_IN_BUNDLE.sub(lambda m: f"{base} + {m.group(1)}/{runs_dir.name}/", value)
    return out


def _set_device(overrides: dict[str, Any], device: str | None) -> None:
    if device is None:
        return
    import torch

    try:
        torch.device(device)
    except RuntimeError as e:
        raise UsageError(f"--device {device}: not a torch device ({e}).") from e
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: PyTorch {torch.__version__} sees no CUDA device.")
    overrides["device"] = f"$torch.device({device!r})"


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """Plain progress lines for a one-off command, instead of the bundle's timestamped log configuration."""
    import monai.bundle.workflows  # noqa: F401  (creates its logger, at level INFO with its own handler)

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    # medical_denoise reports each file's estimated noise level; monai.bundle.workflows would announce that this
    # command skips the bundle's logging.conf
    levels = {"medical_denoise": logging.INFO, "monai.bundle.workflows": logging.ERROR}
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _flatten(items: Any) -> list[Any]:
    if isinstance(items, (list, tuple)):
        return [x for item in items for x in _flatten(item)]
    return [items]


def _report(exc: BaseException, debug: bool) -> None:
    message, expected = user_message(exc, None if debug else "--debug shows all")
    # the library speaks of its arguments
    message = message.replace("pass overwrite=True", "pass --overwrite").replace(
        "skip_existing=True", "--skip_existing True"
    )
    print(f"{PROG}: error: {message}", file=sys.stderr)
    if not expected and not debug:
        print(f"{PROG}: unexpected error; run again with --debug for the full traceback", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
