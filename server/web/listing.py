"""List pages: pagination and streaming CSV export shared by every list view (and the staff API)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from flask import Response, request, stream_with_context
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select

from ..extensions import db
from ..services.readinglist import MAX_PAGE

PER_PAGE = 50
MAX_PER_PAGE = 200
CSV_CHUNK = 500


def paginate(statement: Select, per_page: int = PER_PAGE, total: Callable[[], int] | None = None) -> Pagination:
    """One page of `statement` from the request's ?page= and ?per_page= (bounded). `total` counts the
    rows when the list has a cheaper (or cached) way than counting `statement` itself."""
    # ?page= as sent (a page drops invalid filters leniently): bounded, so its offset fits the database
    page = min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)
    result = db.paginate(
        statement, page=page, per_page=per_page, max_per_page=MAX_PER_PAGE, error_out=False, count=total is None
    )
    if total is not None:
        result.total = total()
    return result


def csv_response(
    filename: str, header: Sequence[str], statement: Select, row: Callable[[Any], Iterable[Any]]
) -> Response:
    """Stream `statement`'s rows as CSV, fetched from the database in chunks: never the whole result
    in memory. Cells that a spreadsheet would run as formulas are neutralised."""

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        result = db.session.execute(statement.execution_options(yield_per=CSV_CHUNK))
        for partition in result.partitions():
            for item in partition:
                writer.writerow([_safe_cell(value) for value in row(item)])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    response = Response(stream_with_context(generate()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # CSV injection: a note typed in the field must not become a formula
    return "" if value is None else value


def wants_csv() -> bool:
    return request.args.get("format") == "csv"
