"""The settings reference of ``docs/configuration.md``, generated from the code.

Sources, so that the page cannot drift from what the program accepts:

* ``chronoq.runtime.config.Settings``: every dataclass field is a row, with its
  default and its attribute docstring (the string right under the field) as the
  meaning, and its ``CHRONOQ_*`` variable (``Settings.load`` reads exactly those);
* the click options of ``chronoq.cli.server_commands``: the flag of each setting
  (a setting without one is environment-only), options that are not settings, and
  one table per other command (``chronoq migrate``).

``scripts/gen_config_docs.py`` rewrites what lies between ``MARKER_START`` and
``MARKER_END`` in the page; ``tests/unit/test_config_docs.py`` fails when the
committed page differs from what this module generates.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from chronoq.runtime.config import Settings, env_name

MARKER_START = "<!-- settings:start -->"
MARKER_END = "<!-- settings:end -->"
SCRIPT = "scripts/gen_config_docs.py"
HEADER = ("flag", "variable", "default", "meaning")


@dataclass(frozen=True, slots=True)
class Row:
    flag: str
    variable: str
    default: str
    meaning: str

    def cells(self) -> tuple[str, str, str, str]:
        return (self.flag, self.variable, self.default, self.meaning)


def attribute_docs(cls: type) -> dict[str, str]:
    """``field name -> docstring`` of a class's annotated attributes (PEP 257's attribute
    docstrings: a string literal right after the assignment)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    docs: dict[str, str] = {}
    for stmt, after in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def markdown(text: str) -> str:
    """One table cell: whitespace folded, RST literals as Markdown code, pipes escaped."""
    text = " ".join(text.split())
    text = re.sub(r"``(.+?)``", r"`\1`", text)
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`"


def render_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return _code("true" if value else "false")
    if isinstance(value, float):
        return _code(f"{value:g}")
    if isinstance(value, str) and value == "":
        return "empty"
    return _code(str(value))


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _flags(param: click.Parameter) -> str:
    opts = " / ".join(_code(o) for o in [*param.opts, *param.secondary_opts])
    return opts or "(none)"


def _help(param: click.Parameter) -> str:
    text = getattr(param, "help", None) or ""
    return re.sub(r"\s*\[env: [^\]]*\]\.?", "", text).strip()


def _envvar(param: click.Parameter) -> str:
    envvar = param.envvar
    if isinstance(envvar, str):
        return _code(envvar)
    return ", ".join(_code(v) for v in envvar or ())


def settings_rows(settings: type, command: click.Command) -> list[Row]:
    """One row per field of ``settings`` (in declaration order), then one per option of
    ``command`` that is not a field. ``ValueError`` names a field nobody documented."""
    docs = attribute_docs(settings)
    params = {p.name: p for p in command.params if isinstance(p, click.Option)}
    rows = []
    for f in dataclasses.fields(settings):
        param = params.pop(f.name, None)
        meaning = docs.get(f.name) or (_help(param) if param is not None else "")
        if not meaning:
            raise ValueError(
                f"setting {f.name!r} has no docstring: write one under the field in "
                f"{inspect.getsourcefile(settings)}"
            )
        rows.append(
            Row(
                flag=_flags(param) if param is not None else "(none)",
                variable=_code(env_name(f.name)),
                default=render_default(_field_default(f)),
                meaning=markdown(meaning),
            )
        )
    for param in params.values():  # an option that is not a setting
        rows.append(_option_row(param))
    return rows


def _option_row(param: click.Option) -> Row:
    default = "required" if param.required else render_default(param.default)
    return Row(_flags(param), _envvar(param), default, markdown(_help(param) or "-"))


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def _names(commands: Sequence[click.Command]) -> str:
    names = [_code(f"chronoq {c.name}") for c in commands]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def render(settings: type = Settings, commands: Sequence[click.Command] | None = None) -> str:
    """The generated block, markers included.

    ``commands[0]`` is ``chronoq up``: the commands with exactly its options share the
    settings table; every other command gets a table of its own options.
    """
    if commands is None:
        from chronoq.cli.server_commands import SERVER_COMMANDS

        commands = SERVER_COMMANDS
    node = commands[0]
    node_options = [p.name for p in node.params]
    shared = [c for c in commands if [p.name for p in c.params] == node_options]
    others = [c for c in commands if c not in shared]
    parts = [
        MARKER_START,
        f"<!-- Generated by {SCRIPT} from chronoq.runtime.config.Settings and the click"
        " options of chronoq.cli.server_commands: edit those, then run the script. -->",
        "",
        f"{_names(shared)} take these options; a setting without a flag is read from its"
        " variable only.",
        "",
        table(settings_rows(settings, node)),
    ]
    for command in others:
        summary = (command.help or "").strip().splitlines()[0] if command.help else ""
        parts += ["", f"### {_code(f'chronoq {command.name}')}", ""]
        if summary:
            parts += [markdown(summary), ""]
        options = [p for p in command.params if isinstance(p, click.Option)]
        parts.append(table([_option_row(p) for p in options]))
    parts.append(MARKER_END)
    return "\n".join(parts)


def rewrite(page: str, block: str | None = None) -> str:
    """``page`` with the text from ``MARKER_START`` to ``MARKER_END`` replaced."""
    start, end = page.find(MARKER_START), page.find(MARKER_END)
    if start < 0 or end < start:
        raise ValueError(f"the page has no {MARKER_START} ... {MARKER_END} section")
    return page[:start] + (block if block is not None else render()) + page[end + len(MARKER_END) :]


def main(path: Path, *, check: bool = False) -> int:
    """Rewrite ``path`` (or, with ``check``, only report whether it is up to date)."""
    page = path.read_text()
    wanted = rewrite(page)
    if page == wanted:
        print(f"{path}: up to date")
        return 0
    if check:
        print(f"{path}: out of date; run {SCRIPT}")
        return 1
    path.write_text(wanted)
    print(f"{path}: settings tables regenerated")
    return 0
