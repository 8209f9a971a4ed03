"""chart_number and chart_percent format plain numbers themselves (thousands of cells on the value
analysis and KPI pages) and give exactly what babel's pattern formatting gives, in both of the product's
languages; other values still go through babel."""

from __future__ import annotations

import pytest
from babel.numbers import format_decimal, format_percent
from flask import Flask, g

from server.web.charts import chart_number, chart_percent

VALUES = [0, 0.4, 0.5, 1.5, 2.5, 0.05, 0.15, 0.125, 0.0125, 0.0135, 999.5, 1000, 1234.5, 1235.5, 2.675, 7]
VALUES += [99_999.49, 1_234_567.0, 10**12 + 0.5, 1 / 3, 2 / 3, 0.99949, 0.9995, 1e-7, 123456789.125]


@pytest.mark.parametrize("locale", ["en", "zh"])
def test_plain_numbers_match_babel(app: Flask, locale: str) -> None:
    with app.test_request_context(headers={"Accept-Language": locale}):
        g.pop("chart_number_symbols", None)
        for value in VALUES:
            for digits in (0, 1, 2):
                pattern = "#,##0" + ("." + "0" * digits if digits else "")
                expected = format_decimal(value, format=pattern, locale=locale)
                assert chart_number(value, digits) == expected, (value, digits)
                expected = format_percent(value, format=pattern + " %", locale=locale)
                assert chart_percent(value, digits) == expected, (value, digits)


def test_other_values_still_go_through_babel(app: Flask) -> None:
    with app.test_request_context():
        assert chart_number(-1234.5) == format_decimal(-1234.5, format="#,##0", locale="en")
        assert chart_percent(-0.125) == format_percent(-0.125, format="#,##0.0 %", locale="en")
        assert chart_number(float("nan")) == format_decimal(float("nan"), format="#,##0", locale="en")
        assert chart_number(None) == "—" and chart_percent(None) == "—"
