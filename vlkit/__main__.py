"""The ``vlkit`` command's entry point (also ``python -m vlkit``).

``vlkit report`` reads CSV files and draws with matplotlib, so it is dispatched before torch
and Lightning are imported (seconds saved); every other subcommand goes to :func:`vlkit.cli.main`.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> None:
    """Run ``vlkit ARGS`` (``sys.argv[1:]`` if None)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "report":
        from vlkit.report import report_main

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        report_main(argv[1:])
        return
    from vlkit.cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()
