"""The ``torchrig`` command line. torch and plugins are imported only by the commands that need
them, so ``torchrig --help`` answers at once."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._errors import TorchrigError
from ._version import __version__

DESCRIPTION = """\
torchrig: train, evaluate and predict with PyTorch models from YAML recipes.

examples:
  torchrig list models --plugin vision
  torchrig info vision/small_cnn
  torchrig train recipes/vision/digits.yaml --set trainer.max_epochs=3
  torchrig evaluate runs/digits --split test
  torchrig predict runs/digits photo.png
  torchrig report runs/digits
  torchrig export runs/digits --format onnx"""

KINDS = ("models", "datasets", "transforms")


def _at_least(low: int) -> Any:
    """An argparse type: an integer of at least ``low`` (``--top 0`` printed no labels, and
    ``--nproc 0`` trained on one process without a word)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchrig", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"torchrig {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list registered models, datasets and transforms")
    p.add_argument("kind", nargs="?", metavar="KIND", help=f"only this kind ({', '.join(KINDS)}); a word that is "
                   "not a kind is taken as the pattern")
    p.add_argument("pattern", nargs="?", help="a part of the name (resnet), or a glob ('*resnet*')")
    p.add_argument("--plugin", help="only this plugin's components")

    p = sub.add_parser("info", help="a component's parameters and documentation, or what a run dir holds")
    p.add_argument("name", help="e.g. vision/small_cnn, or a run dir")

    sub.add_parser("plugins", help="each plugin: distribution, version, loaded or the error")

    p = sub.add_parser("check-plugin", help="run a plugin's components through the plugin protocol")
    p.add_argument("name", help="the plugin (its entry point's name), e.g. acme")

    p = sub.add_parser("train", help="train a recipe into a run dir")
    p.add_argument("recipe", help="a recipe YAML file")
    p.add_argument("--out", help="the run dir (default: runs/<recipe name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set data.batch_size=128 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--nproc", type=_at_least(1), default=1, metavar="N",
                   help="train with DDP on N processes of this machine (runs torchrun --standalone "
                        "--nproc_per_node N); for several machines call torchrun yourself")

    p = sub.add_parser("lr-find", help="the learning-rate range test for a recipe: plot and suggestion")
    p.add_argument("recipe", help="a recipe YAML file")
    p.add_argument("--out", help="where plots/lr_find.png and lr_find.json go (default: runs/<recipe name>-lr-find)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key (repeatable)")
    p.add_argument("--steps", type=int, default=100, help="training steps in the sweep (default 100)")

    p = sub.add_parser("cv", help="K-fold cross-validation of a recipe: a run dir per fold, mean ± std")
    p.add_argument("recipe", help="a recipe YAML file")
    p.add_argument("--folds", type=int, required=True, metavar="K")
    p.add_argument("--group-by", help="keep groups whole: a dataset field, or a regex on file names")
    p.add_argument("--out", help="the folder (default runs/<recipe name>-cv); finished folds in it are skipped")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key for every fold (repeatable)")
    p.add_argument("--jobs", type=int, default=2,
                   help="folds at once, in local processes (default 2; -1: one per core, as in joblib)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run the folds on this Dask scheduler instead")

    p = sub.add_parser("evaluate", help="recompute metrics from a run dir")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("predict", help="predict files (or '-' for text lines on stdin) with a run dir's model")
    p.add_argument("run_dir")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--top", type=_at_least(1), default=3, help="how many labels to show (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--engine", choices=("torch", "onnxruntime"), default="torch",
                   help="run the model in torch (default) or its ONNX export in onnxruntime")
    p.add_argument("--force", action="store_true",
                   help="predict input the run's reader refuses as the wrong kind (binary input to a text run)")

    p = sub.add_parser("report", help="write RUN_DIR/report.html: one self-contained page of the run")
    p.add_argument("run_dir")

    p = sub.add_parser("export", help="export a run's model to ONNX or torch.export (pt2), with model.json")
    p.add_argument("run_dir")
    p.add_argument("--format", choices=("onnx", "pt2"), default="onnx")
    p.add_argument("--out", help="the folder to write (default RUN_DIR/export/FORMAT)")
    p.add_argument("--force", action="store_true", help="replace an earlier export")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``torchrig`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        unsplit = [o for o in getattr(args, "overrides", None) or [] if "=" not in o]
        hint = f" --set takes key=value as one word: --set {unsplit[0]}={extra[0]}" if unsplit else ""
        parser.error(f"unrecognized arguments: {' '.join(extra)}.{hint}")
    if args.command is None:
        parser.print_help(sys.stdout)
        return 0
    try:
        return COMMANDS[args.command](args)
    except TorchrigError as exc:
        where = f" (rank {os.environ['RANK']})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        print(f"torchrig: error{where}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("torchrig: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and _peer_failed(exc):
            # under torchrun: the failing rank reports its own error; the others say one line
            print(f"torchrig: rank {os.environ.get('RANK')} stopped: another rank failed (its error is above).",
                  file=sys.stderr)
            return 1
        if os.environ.get("TORCHRIG_TRACEBACK"):
            raise
        return _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    """An exception no check anticipated: one line on stderr, the traceback in a file (a user
    never faces 20 lines of library internals; a bug report still gets them)."""
    import tempfile
    import traceback

    path: Any = os.path.join(tempfile.gettempdir(), f"torchrig-traceback-{os.getpid()}.txt")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    except OSError:
        path = None
    where = f" (rank {os.environ['RANK']})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    print(f"torchrig: internal error{where}: {type(exc).__name__}: {exc}", file=sys.stderr)
    print("  This is a bug in torchrig or in a plugin, not something to fix in your input. "
          + (f"The traceback is in {path}; " if path else "")
          + "please attach it to a bug report (TORCHRIG_TRACEBACK=1 prints it here instead).", file=sys.stderr)
    return 1


def _peer_failed(exc: BaseException) -> bool:
    """A collective failed because another process went away (gloo/NCCL messages)."""
    text = str(exc)
    return any(s in text for s in ("Connection closed by peer", "Connection reset by peer", "remote worker",
                                   "NCCL communicator was aborted", "Broken pipe"))


def _list(args: argparse.Namespace) -> int:
    from ._registry import list_components

    if args.plugin:
        _known_plugin(args.plugin)
    kind = args.kind if args.kind is None or args.kind in KINDS else f"{args.kind}s"  # model -> models
    if kind is not None and kind not in KINDS:  # `torchrig list resnet`: a pattern, not a kind
        if args.pattern is not None:
            raise TorchrigError(f"torchrig list: {args.kind!r} is not a kind; the kinds are {', '.join(KINDS)}.")
        kind, args.pattern = None, args.kind
    kinds = [kind] if kind else list(KINDS)
    found = {k: list_components(k[:-1], args.pattern, plugin=args.plugin) for k in kinds}
    if args.pattern and not any(found.values()):
        print(f"nothing matches {args.pattern!r}; `torchrig list` shows every name")
    for kind in kinds:
        names = found[kind]
        if args.pattern and not names and len(kinds) > 1:
            continue  # a search: only the kinds it found something in
        print(f"{kind} ({len(names)}):")
        by_plugin: dict[str, list[str]] = {}
        for name in names:
            by_plugin.setdefault(name.split("/", 1)[0], []).append(name)
        for plugin, group in by_plugin.items():
            print(f"  {plugin}: " + ", ".join(n.split("/", 1)[1] for n in group))
    _report_failures()
    return 0


def _known_plugin(name: str) -> None:
    """Refuse a plugin name that no installed or registered plugin has, with the close ones."""
    from ._errors import did_you_mean
    from ._plugins import plugin_statuses

    names = sorted({s.name for s in plugin_statuses()})
    if name not in names:
        raise TorchrigError(f"No plugin named {name!r}.{did_you_mean(name, names)} Installed: {', '.join(names)} "
                            "(`torchrig plugins` lists them with their state).")


def _report_failures() -> None:
    from ._plugins import plugin_statuses

    for s in plugin_statuses():
        if s.state == "failed":
            print(f"note: plugin {s.name!r} ({s.source}) failed to load; see `torchrig plugins`.", file=sys.stderr)


def _info(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._registry import component_info

    if (Path(args.name) / "meta.json").is_file():  # a run dir: what it is and what it expects
        print(_run_info(Path(args.name)))
        return 0
    print(component_info(args.name)[1])
    return 0


def _run_info(run_dir: Any) -> str:
    from ._files import SUMMARY, check_run, read_json

    check_run(run_dir)
    meta = read_json(run_dir / "meta.json", "the run's metadata")
    lines = [f"{run_dir}  (run dir: {meta.get('task')} on {meta.get('dataset')})"]
    if meta.get("classes"):
        lines.append(f"  classes: {', '.join(meta['classes'])}")
    if meta.get("input_note"):
        lines.append(f"  input:   {meta['input_note']}")
    summary = read_json(run_dir / SUMMARY, "the run's summary") if (run_dir / SUMMARY).is_file() else {}
    for split in ("val", "test"):
        if isinstance(summary.get(split), dict):
            scores = ", ".join(f"{k} {v:.4f}" for k, v in summary[split].items() if isinstance(v, float))
            lines.append(f"  {split + ':':<9}{scores}")
    return "\n".join(lines)


def _plugins(args: argparse.Namespace) -> int:
    from ._plugins import plugin_statuses

    statuses = plugin_statuses()
    if not statuses:
        print("no plugins installed (none declares the entry-point group 'torchrig.plugins')")
    for s in statuses:
        line = f"{s.name:<10} {s.source:<28} {s.state}"
        if s.state == "ok":
            line += f" ({s.components} components)"
        print(line)
        if s.note:
            print(f"           note:  {s.note}")
        if s.state == "failed":
            print(f"           error: {s.error}\n           fix:   {s.hint}")
    return 0


def _check_plugin(args: argparse.Namespace) -> int:
    from .testing import inspect_plugin

    _known_plugin(args.name)
    report = inspect_plugin(args.name)
    print(report)
    return 1 if report.problems else 0


def _train(args: argparse.Namespace) -> int:
    from ._recipe import load_recipe
    from ._run import train

    recipe = load_recipe(args.recipe, args.overrides)  # a bad recipe fails here, before any launch
    if args.nproc > 1 and "RANK" not in os.environ:
        return _torchrun(args)
    train(recipe, out=args.out, resume=args.resume, progress_bar=not args.quiet)
    return 0


def _torchrun(args: argparse.Namespace) -> int:
    """Replace this process by torchrun running the same command on ``--nproc`` processes."""
    command = ["train", args.recipe, *(["--out", args.out] if args.out else [])]
    command += [item for o in args.overrides for item in ("--set", o)]
    command += ["--resume"] * args.resume + ["--quiet"] * args.quiet
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
            "-m", "torchrig", *command]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
    return 0  # not reached


def _evaluate(args: argparse.Namespace) -> int:
    from ._interpret import format_per_class
    from ._run import evaluate_run, format_scores

    scores, per_class = evaluate_run(args.run_dir, split=args.split)
    if args.json:
        print(json.dumps({**scores, **({"per_class": per_class} if per_class else {})}))
        return 0
    print(format_scores({args.split: scores}))
    if per_class:
        print(format_per_class(per_class, args.split))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ._run import predict

    results = predict(args.run_dir, args.inputs, top_k=args.top, engine=args.engine, force=args.force)
    unsure = [r for r in results if "top" in r and r["top"] and r["top"][0][1] < 0.5]
    if unsure:
        from pathlib import Path

        from ._files import read_json

        note = read_json(Path(args.run_dir) / "meta.json", "the run's metadata").get("input_note")
        if note:
            print(f"note: {len(unsure)} of {len(results)} prediction(s) are below 0.5 probability. This model "
                  f"expects {note}.", file=sys.stderr)
    for result in results:
        if args.json:
            print(json.dumps(result))
        elif "top" in result:
            labels = "  ".join(f"{name} {p:.3f}" for name, p in result["top"])
            print(f"{result['input']}: {labels}")
        else:
            print(f"{result['input']}: {result['value']}")
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._build import build
    from ._files import atomic_write
    from ._lrfind import rounded, sweep_recipe
    from ._recipe import component, load_recipe
    from ._seed import seed_everything

    recipe = load_recipe(args.recipe, args.overrides)
    name, kwargs = component(recipe["optimizer"])
    if kwargs.get("lr") == "auto":  # the sweep decides; build the rest with a placeholder
        recipe.data["optimizer"] = {"name": name, **kwargs, "lr": 1e-3}
    generator = seed_everything(int(recipe["seed"]))
    parts = build(recipe, generator=generator)
    result = sweep_recipe(parts, num_steps=args.steps)
    out = Path(args.out) if args.out else Path("runs") / f"{recipe['name']}-lr-find"
    plot = result.plot(out / "plots" / "lr_find.png")
    atomic_write(out / "lr_find.json", json.dumps({"lrs": result.lrs, "losses": result.losses,
                                                   "suggestion": result.suggestion,
                                                   "stopped_early": result.stopped_early}, indent=1).encode())
    if result.suggestion is None:
        print(f"no learning rate where the loss falls fastest was found; see {plot}")
        return 1
    lr = rounded(result.suggestion)
    print(f"suggested learning rate: {lr}   (plot: {plot})")
    print(f"use it: --set optimizer.lr={lr}, or optimizer.lr: auto in the recipe")
    return 0


def _cv(args: argparse.Namespace) -> int:
    from ._cv import CV_SUMMARY, format_cv, run_cv

    out, summary = run_cv(args.recipe, folds=args.folds, overrides=args.overrides, group_by=args.group_by,
                          out=args.out, n_jobs=args.jobs, scheduler=args.scheduler)
    print(f"{args.folds}-fold cross-validation (mean ± std over the folds):")
    print(format_cv(summary))
    print(f"folds in {out}/fold-1 ... fold-{args.folds}; summary in {out / CV_SUMMARY}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ._export import FORMATS, SPEC, export

    folder = export(args.run_dir, format=args.format, out=args.out, force=args.force)
    spec = json.loads((folder / SPEC).read_text())
    print(f"exported: {folder / FORMATS[args.format]}  (and {SPEC}: classes, inputs, preprocessing)")
    print(f"checked against torch on a batch of {spec['checked']['batch']}: max abs difference "
          f"{spec['checked']['max_abs_diff']:.2g}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ._report import write_report

    print(f"report: {write_report(args.run_dir)}")
    return 0


COMMANDS = {"report": _report, "export": _export, "lr-find": _lr_find, "cv": _cv, "list": _list, "info": _info, "plugins": _plugins, "train": _train,
            "evaluate": _evaluate, "predict": _predict, "check-plugin": _check_plugin}
