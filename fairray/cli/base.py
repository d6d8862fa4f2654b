"""The `fairray` app, its shared options and the one place where a command resolves its config and reports errors."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, get_type_hints

import typer
import yaml
from rich.console import Console

from fairray.config import Cfg, apply_override, dump_config, load_config, read_yaml
from fairray.errors import FairrayError
from fairray.machine import keep_freed_memory

app = typer.Typer(help="fairray: fair generative face data on Ray, tracked in MLflow.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
debias_app = typer.Typer(help="Debiasing methods: fairgen density-ratio weights, ...", no_args_is_help=True)
app.add_typer(debias_app, name="debias")
console = Console(stderr=True)
out_console = Console(soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a config key: a.b=value (repeatable).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and exit.")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output directory (default ./runs/<command>-<time>).")]

# every config command takes these after its own options; names are what typer passes the command
_SHARED = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOpt),
           inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=SetOpt),
           inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DryRunOpt),
           inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=OutOpt)]
_SHARED_NAMES = {p.name for p in _SHARED}

F = TypeVar("F", bound=Callable[..., Any])


VERBOSE = {"on": False}  # the app-wide -v, for commands that keep a quiet console otherwise


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging; long commands (demo) show "
                                                                      "Ray, Tune and MLflow output too.")] = False
         ) -> None:
    VERBOSE["on"] = verbose
    keep_freed_memory()  # in-process labeling, metrics and sampling run at their steady speed (machine.py)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def fail(e: FairrayError) -> NoReturn:
    """A user mistake: one red line on stderr and exit code 2, never a traceback."""
    console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


def user_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FairrayError as e:
            fail(e)

    return wrapper  # type: ignore[return-value]


def warn_if_not_meaningful(metrics: dict) -> None:
    """One line on the console when generated samples fail the validity rule (a `valid_<n>` of 0)."""
    if any(k.startswith("valid_") and v == 0 for k, v in metrics.items()):
        from fairray.metrics.validity import VALIDITY_RULE

        console.print(f"[yellow]not meaningful:[/] the samples fail the validity rule ({VALIDITY_RULE}); their "
                      "fairness numbers describe samples that are not faces of the data", highlight=False)


def default_out(command: str, out: Path | None) -> Path:
    """--out, or runs/<command>-<time>; absolute, since Ray workers run in directories of their own."""
    return (out if out is not None else Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}").absolute()


def assign(**values: Any) -> list[str]:
    """`--set` assignments for the options a command copies into its config; JSON-quoted, so a path such as `123`
    or `null` stays a string when read back as YAML."""
    return [f"{k}={json.dumps(str(v) if isinstance(v, Path) else v)}" for k, v in values.items() if v is not None]


def resolve_options(path: Path | None, sets: list[str]) -> dict:
    """An untyped config (a reader's options): the YAML file with the `--set`s applied."""
    options = read_yaml(path) if path is not None else {}
    for s in sets:
        apply_override(options, s)
    return options


def stage_command(group: typer.Typer, name: str, cls: type[Cfg] | None, *, out_name: str | None = None,
                  sets: Callable[..., list[str]] | None = None,
                  note: Callable[..., str] | None = None) -> Callable[[F], F]:
    """Register `body(cfg, out, **options)` as the command `name` with --config/--set/--dry-run/--out added.

    The command resolves `cls` from the config file, then `sets(**options)` (the command's own options copied into
    the config), then the user's `--set`s; with --dry-run it prints that config (and `note(**options)`) instead of
    calling the body, which otherwise gets the default out dir `runs/<out_name>-<time>`. cls None: the config is a
    plain dict. A body that also names `config` or `set_` gets them as typed (to record how it was invoked). Every
    FairrayError on the way is one red line and exit 2."""

    def register(body: F) -> F:
        hints = get_type_hints(body, include_extras=True)
        declared = list(inspect.signature(body).parameters.values())[2:]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name])
               for p in declared if p.name not in _SHARED_NAMES]
        wants = {p.name for p in declared} & {"config", "set_"}

        def command(*, config: Path | None, set_: list[str] | None, dry_run: bool, out: Path | None,
                    **options: Any) -> None:
            try:
                pre = sets(**options) if sets is not None else []
                cfg = (load_config(cls, config, [*pre, *(set_ or [])]) if cls is not None
                       else resolve_options(config, [*pre, *(set_ or [])]))
                if dry_run:
                    text = dump_config(cfg) if cls is not None else yaml.safe_dump(cfg, sort_keys=False)
                    out_console.print(text, end="", highlight=False, markup=False)
                    if note is not None:
                        out_console.print(note(**options), highlight=False, markup=False)
                    return
                raw = {k: v for k, v in (("config", config), ("set_", set_)) if k in wants}
                body(cfg, default_out(out_name or name, out), **options, **raw)
            except FairrayError as e:
                fail(e)

        params = [*own, *_SHARED]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}  # typer reads both
        command.__name__, command.__qualname__, command.__doc__ = body.__name__, body.__qualname__, body.__doc__
        command.__module__ = body.__module__
        group.command(name)(command)
        return body

    return register
