"""``python -m vlkit.cli ...``: the ``vlkit`` command (e.g. under ``torchrun``)."""

from vlkit.cli import main

if __name__ == "__main__":
    main()
