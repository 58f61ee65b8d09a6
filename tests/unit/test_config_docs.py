"""docs/configuration.md's settings tables are what the code generates, and stay so.

The page must list every setting and every flag and nothing else: a new setting, a
renamed flag or a changed default makes the committed page differ from the generated
one, and the first test fails until ``scripts/gen_config_docs.py`` is run.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

import click
import pytest

from chronoq.cli import _config_docs
from chronoq.cli.server_commands import SERVER_COMMANDS, up
from chronoq.runtime.config import Settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_committed_page_is_the_generated_one() -> None:
    page = PAGE.read_text()
    wanted = _config_docs.rewrite(page)
    diff = "".join(
        difflib.unified_diff(
            page.splitlines(keepends=True),
            wanted.splitlines(keepends=True),
            "docs/configuration.md (committed)",
            "docs/configuration.md (generated)",
        )
    )
    assert page == wanted, (
        "docs/configuration.md does not match the settings and flags: run "
        f"`.venv/bin/python {_config_docs.SCRIPT}` and commit the result\n{diff}"
    )


def test_every_setting_has_a_row_with_its_variable_and_every_flag_appears() -> None:
    block = _config_docs.render()
    rows = [line.split(" | ") for line in block.splitlines() if line.startswith("| ")]
    variables = {cells[1].strip("`") for cells in rows}
    for f in dataclasses.fields(Settings):
        assert f"CHRONOQ_{f.name.upper()}" in variables, f.name
    for command in SERVER_COMMANDS:
        for param in command.params:
            for flag in [*param.opts, *param.secondary_opts]:
                assert f"`{flag}`" in block, f"chronoq {command.name} {flag}"


def test_every_setting_has_a_docstring() -> None:
    docs = _config_docs.attribute_docs(Settings)
    missing = [f.name for f in dataclasses.fields(Settings) if not docs.get(f.name)]
    assert not missing, f"settings without an attribute docstring: {missing}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class _MoreSettings:
    port: int = 8080
    """The port."""
    brand_new: float = 1.5
    """A setting added later | with a pipe and ``code``."""


def test_a_new_setting_is_picked_up_with_its_default_and_docstring() -> None:
    rows = _config_docs.settings_rows(_MoreSettings, up)
    new = next(r for r in rows if r.variable == "`CHRONOQ_BRAND_NEW`")
    assert new == _config_docs.Row(
        flag="(none)",
        variable="`CHRONOQ_BRAND_NEW`",
        default="`1.5`",
        meaning="A setting added later \\| with a pipe and `code`.",
    )
    port = next(r for r in rows if r.variable == "`CHRONOQ_PORT`")
    assert port.flag == "`--port`"
    # Options of the command that are not fields of this class still get a row.
    assert any(r.flag == "`--host`" for r in rows)


def test_a_setting_nobody_documented_is_an_error() -> None:
    @dataclasses.dataclass(frozen=True)
    class Bare:
        secret_knob: int = 3

    with pytest.raises(ValueError, match="secret_knob"):
        _config_docs.settings_rows(Bare, click.Command("x"))


def test_rewrite_touches_only_the_marked_section() -> None:
    page = f"before\n{_config_docs.MARKER_START}\nold\n{_config_docs.MARKER_END}\nafter\n"
    assert _config_docs.rewrite(page, "NEW") == "before\nNEW\nafter\n"
    with pytest.raises(ValueError, match="settings:start"):
        _config_docs.rewrite("no markers here", "NEW")


def test_main_check_reports_an_out_of_date_page(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text(f"x\n{_config_docs.MARKER_START}\nstale\n{_config_docs.MARKER_END}\n")
    assert _config_docs.main(page, check=True) == 1
    assert "stale" in page.read_text()
    assert _config_docs.main(page) == 0
    assert _config_docs.main(page, check=True) == 0
    assert "`CHRONOQ_PORT`" in page.read_text()
