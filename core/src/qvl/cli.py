"""The ``qvl`` command.

argparse, not click or typer: it is in the standard library, adds nothing to start-up time
(``qvl --help`` must stay well under a second and import neither torch nor any plugin), and the
command surface is small.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from qvl import __version__

DEBUG_ENV = "QVL_DEBUG"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qvl",
        description="Fine-tune Qwen-VL vision-language models for robot tasks.",
        epilog="Examples:\n  qvl tasks\n  qvl run colors train --set train.steps=50\n"
               "  qvl run colors eval\n  qvl config colors --set backbone.finetune=lora",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qvl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run a stage of a task: train, eval, predict, or a task's own")
    run.add_argument("task", help="task name (see 'qvl tasks')")
    run.add_argument("stage", help="train, eval, predict, or a stage the task adds")
    _config_arguments(run)
    run.add_argument("--run-dir", help="run directory (default: new for train, latest run for eval/predict)")
    run.add_argument("--resume", action="store_true", help="train: continue from the last complete checkpoint")
    run.add_argument("--input", help="predict: an input file or folder (sets predict.input)")
    run.add_argument("--save-vis", action="store_true",
                     help="predict: also draw the predictions as PNGs (sets predict.save_vis); "
                          "eval: also draw the metrics, for tasks that do (sets eval.save_vis); "
                          "a task's own stage may take it too")
    run.add_argument("--checkpoint", metavar="WHICH",
                     help="eval/predict: best, last or step-N (default: best when the run kept one, else last)")

    export = commands.add_parser(
        "export", help="write a trained run as a Hugging Face model folder (transformers/peft load it without qvl)")
    export.add_argument("--run-dir", required=True, help="the run folder 'qvl run TASK train' made")
    export.add_argument("--out", required=True, help="the folder to write (new, empty, or an earlier export)")
    export.add_argument("--checkpoint", metavar="WHICH", help="best, last or step-N (default: best, else last)")
    export.add_argument("--adapter", action="store_true",
                        help="keep LoRA as a PEFT adapter instead of merging it into the weights")
    export.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting over the run's own, e.g. backbone.dtype=bfloat16 (repeatable)")

    config = commands.add_parser("config", help="print the effective config of a task as TOML")
    config.add_argument("task")
    _config_arguments(config)

    commands.add_parser("tasks", help="list installed tasks as JSON")
    commands.add_parser("plugins", help="list installed plugins, their hooks and load errors as JSON")

    new = commands.add_parser("new-plugin", help="write a new plugin package qvl-NAME (with tests) to start from")
    new.add_argument("name", help="task name: letters, digits, '-' or '_'")
    new.add_argument("--dir", default=".", help="folder to create qvl-NAME/ in (default: the current one)")
    new.add_argument("--kind", choices=("sft", "head"), default="sft",
                     help="sft: the LM head learns to write answers (default); head: a classifier head")
    return parser


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", action="append", default=[], metavar="FILE",
                        help="TOML config file (repeatable; later files win)")
    parser.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override one key, e.g. --set train.lr=2e-4 (repeatable)")


def _host():  # noqa: ANN202 - imported lazily to keep --help fast
    from qvl.plugins import load_plugins

    host = load_plugins()
    for error in host.errors:
        print(f"qvl: warning: plugin {error.name!r} failed to load: {error.error}", file=sys.stderr)
        if os.environ.get(DEBUG_ENV) and error.detail:
            print(error.detail, file=sys.stderr)
    return host


def _command(args: argparse.Namespace) -> int:
    if args.command == "tasks":
        host = _host()
        tasks = [
            {"name": t.name, "plugin": t.plugin, "stages": list(t.all_stages), "description": t.description}
            for t in sorted(host.tasks.values(), key=lambda t: t.name)
        ]
        print(json.dumps(tasks, indent=2))
        return 0
    if args.command == "plugins":
        from qvl.plugins import describe, load_plugins

        print(json.dumps(describe(load_plugins()), indent=2))
        return 0
    if args.command == "config":
        from qvl.config import load_config, to_toml

        host = _host()
        print(to_toml(load_config(host.task(args.task), args.config, args.overrides)), end="")
        return 0
    if args.command == "export":
        from qvl.export import export_run

        out = export_run(_host(), args.run_dir, args.out, checkpoint=args.checkpoint, adapter=args.adapter,
                         overrides=args.overrides)
        print(f"wrote {out} (AutoModelForImageTextToText.from_pretrained({str(out)!r}); model card: README.md)")
        return 0
    if args.command == "new-plugin":
        from qvl.scaffold import new_plugin

        target = new_plugin(args.name, args.dir, args.kind)
        print(f"wrote {target}\nnext: cd {target} && pip install -e . && python -m pytest")
        return 0
    if args.command == "run":
        from qvl.runner.inference import InferenceResult, format_metrics
        from qvl.runner.stages import run_stage

        host = _host()
        overrides = list(args.overrides)
        if args.stage_arguments:
            from qvl.config import ConfigError
            from qvl.task import stage_option_overrides

            try:
                overrides += stage_option_overrides(host.task(args.task), args.stage, args.stage_arguments)
            except ValueError as exc:
                raise ConfigError([str(exc)]) from exc
        result = run_stage(host, args.task, args.stage, config_files=args.config, overrides=overrides,
                           run_dir=args.run_dir, resume=args.resume, predict_input=args.input,
                           save_vis=args.save_vis, checkpoint=args.checkpoint)
        if isinstance(result, InferenceResult) and result.metrics is not None:
            print(format_metrics(result.metrics))
            written = "eval.json" if args.stage == "eval" else "summary.json"
            print(f"\nwritten: {result.out_dir / written}")
        return 0
    return 2


def user_message(exc: BaseException) -> str:
    """A user error's one line, also when a DataLoader worker raised it: torch re-raises it in the
    main process as "Caught X in DataLoader worker process N. Original Traceback ... module.X: line"."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    name = type(exc).__name__
    head, _, message = last.partition(": ")
    return message if head.endswith(name) else last


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    # a task's stage may have options of its own (Task.stage_options): left for `run` to map
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.stage_arguments = extra
    if args.command is None:
        parser.print_help()
        return 2
    from qvl.config import ConfigError

    # bitsandbytes' CPU backend logs a warning at import asking for the `kernels` package, which
    # would download kernels from a hub at run time; qvl runs without it.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    from qvl.errors import USER_ERROR_EXIT, UserError, is_out_of_space, out_of_space

    try:
        status = _command(args)
        sys.stdout.flush()  # here, so that a reader that went away is noticed inside the try
        return status
    except BrokenPipeError:
        if not _stdout_closed():  # another pipe (a socket, a worker): not the reader of our output
            return _internal_error()
        return _reader_gone()
    except ConfigError as exc:
        print("qvl: configuration error:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return USER_ERROR_EXIT
    except UserError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"qvl: error: {user_message(exc)}", file=sys.stderr)
        print(f"qvl: (set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        print("qvl: interrupted; complete checkpoints are kept", file=sys.stderr)
        return 130
    except Exception as exc:
        if is_out_of_space(exc) and not os.environ.get(DEBUG_ENV):
            # a full disk met by a write that does not say more (a plugin's own file); checkpoints
            # and builds raise OutOfSpaceError with what they need and what they kept
            where = getattr(exc, "filename", None)
            line = (str(out_of_space(where, "it", needed="more space", kept="free some space and run again"))
                    if where else f"out of disk space ({exc}); free some space and run again")
            print(f"qvl: error: {line}", file=sys.stderr)
            return USER_ERROR_EXIT
        return _internal_error()


def _internal_error() -> int:
    """Not a mistake in the user's input: a bug in qvl, a plugin or a library. Show where."""
    traceback.print_exc()
    print("qvl: internal error (the traceback above is a bug in qvl, a plugin or a library, not in "
          "your input; please report it)", file=sys.stderr)
    return 1


def _stdout_closed() -> bool:
    """Whether the reader of our standard output has gone (poll reports an error on a pipe's
    writing end once nobody reads it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll here, or no file descriptor behind stdout
        return True


def _reader_gone() -> int:
    """The end of ``qvl tasks | head -1``: the reader closed the pipe. Stop quietly, as Unix tools
    do, with the status of a process ended by SIGPIPE; stdout is pointed at /dev/null so that
    Python's own flush at exit does not report the broken pipe once more."""
    import signal

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor to redirect (stdout replaced in-process)
        pass
    return 128 + signal.SIGPIPE
