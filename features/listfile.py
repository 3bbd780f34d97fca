"""The list file format: a CSV with the header ``msisdn,operator,reason``.

Operators and the simulator ship allow-lists in this form; ``callscreen lists load`` and
``callscreen replay --allowlist`` both read it here, so the two agree on what a valid file is.
"""

from __future__ import annotations

import csv
from pathlib import Path

from features.errors import ListFileError, NumberFormatError
from features.numbering import canonical
from features.store import ListEntry, ListKind

HEADER = ("msisdn", "operator", "reason")


def read_list_csv(
    path: Path, *, kind: ListKind, source: str, added_at: int, expires_at: int | None = None
) -> list[ListEntry]:
    """Entries of one list file; the operator column becomes the entry's owner.

    A number may be E.164 or a service short code (operators' call-back numbers such as 1414).
    Raises ListFileError naming the file, the line and the fix.
    """
    entries = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(HEADER) - set(reader.fieldnames or ())
        if missing:
            raise ListFileError(
                f"{path}: list CSV lacks column(s) {sorted(missing)}; expected the header msisdn,operator,reason"
            )
        for line, row in enumerate(reader, start=2):
            try:
                number = canonical(row["msisdn"].strip(), allow_short_code=True)
            except NumberFormatError as exc:
                raise ListFileError(f"{path} line {line}: msisdn {exc}") from None
            entries.append(
                ListEntry(number, kind, source, row["reason"] or "", row["operator"] or "", added_at, expires_at)
            )
    return entries
