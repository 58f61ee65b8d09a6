#!/usr/bin/env python3
"""Regenerate the settings tables of docs/configuration.md from the code.

    .venv/bin/python scripts/gen_config_docs.py           # rewrite the page
    .venv/bin/python scripts/gen_config_docs.py --check   # exit 1 if it is out of date

The tables come from ``chronoq.runtime.config.Settings`` (fields, defaults, attribute
docstrings) and the click options of ``chronoq.cli.server_commands`` (flags, variables);
see ``chronoq.cli._config_docs``. Only the text between ``<!-- settings:start -->`` and
``<!-- settings:end -->`` is touched.
"""

from __future__ import annotations

import sys
from pathlib import Path

from chronoq.cli import _config_docs

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

if __name__ == "__main__":
    sys.exit(_config_docs.main(PAGE, check="--check" in sys.argv[1:]))
