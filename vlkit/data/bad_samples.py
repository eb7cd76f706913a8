"""Bad samples: what to do with a row or image that cannot be used (``on_bad_sample``).

- ``"error"`` (default): a :class:`BadSampleError` naming the split, row and column.
- ``"skip"``: the sample is left out, counted and reported (a warning when the data is
  prepared, for text problems; a per-batch count logged by the task as ``<split>/skipped``
  for unreadable images, which are only found when decoded).
"""

from __future__ import annotations

import logging

__all__ = [
    "BAD_SAMPLE_POLICIES",
    "BadSampleError",
    "check_bad_sample_policy",
    "report_bad_rows",
    "report_unreadable_image",
]

log = logging.getLogger(__name__)

BAD_SAMPLE_POLICIES = ("error", "skip")


class BadSampleError(ValueError):
    """A sample that cannot be used; the message names the split, row and column."""


def check_bad_sample_policy(on_bad_sample: str) -> None:
    """Raise ValueError unless ``on_bad_sample`` is one of :data:`BAD_SAMPLE_POLICIES`."""
    if on_bad_sample not in BAD_SAMPLE_POLICIES:
        raise ValueError(f"on_bad_sample must be one of {list(BAD_SAMPLE_POLICIES)}, got {on_bad_sample!r}")


def report_bad_rows(name: str, column: str, problem: str, rows: list[int], on_bad_sample: str) -> None:
    """Raise or warn about the rows of one split column that cannot be used.

    Args:
        name: the split, for the message.
        column: the column, for the message.
        problem: what is wrong with those rows, e.g. ``"empty or missing text"``.
        rows: the row indices (nothing happens if empty).
        on_bad_sample: ``"error"`` raises, ``"skip"`` logs a warning (the caller leaves them out).

    Raises:
        BadSampleError: ``rows`` is not empty and ``on_bad_sample="error"``; the message names
            the split, column, first rows and how to go on.
    """
    if not rows:
        return
    message = (
        f"split {name!r}, column {column!r}: {len(rows)} row(s) with {problem} at rows "
        f"{rows[:10]}{' ...' if len(rows) > 10 else ''}"
    )
    if on_bad_sample == "error":
        raise BadSampleError(f"{message}. Fix the data, or set on_bad_sample: skip")
    log.warning("%s: skipped (on_bad_sample=skip)", message)


def report_unreadable_image(name: str, row: int, column: str, error: Exception, on_bad_sample: str) -> None:
    """Raise or warn about an image that cannot be decoded (the caller leaves the sample out).

    Raises:
        BadSampleError: with ``on_bad_sample="error"``; the message names the split, row and
            column, the decoding error, and how to go on.
    """
    reason = f"{type(error).__name__}: {error}"
    if on_bad_sample == "skip":
        log.warning("skipping split %r, row %d, column %r: unreadable image (%s)", name, row, column, reason)
        return
    raise BadSampleError(
        f"split {name!r}, row {row}, column {column!r}: cannot read the image ({reason}). "
        "Fix or remove the row, or set on_bad_sample: skip"
    ) from error
