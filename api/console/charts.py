"""Charts drawn on the server as SVG: no script to load or vet, nothing from outside the
service, and the figures are in the page itself (each bar and point carries its value,
and a table beside each chart gives them in words). Every piece is a `Markup` template
whose values are escaped as they are put in."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from api.console.words import Words

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 112, 16, 16, 56
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
BASE = TOP + PLOT_H
SERIES = ("appropriated", "committed", "net_paid")

_SVG = Markup(
    '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{title}" '
    'xmlns="http://www.w3.org/2000/svg"><title>{title}</title>{body}</svg>'
)
_AXIS = Markup('<line class="axis" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"/>')
_TICK = Markup('<text class="tick" x="{x}" y="{y}" text-anchor="end">{text}</text>')
_LABEL = Markup('<text class="label" x="{x:.1f}" y="{y}" text-anchor="middle">{text}</text>')
_BAR = Markup(
    '<rect class="bar {series}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
    'data-value="{value}"><title>{title}</title></rect>'
)
_SWATCH = Markup(
    '<rect class="bar {series}" x="{x}" y="{y}" width="12" height="12"/>'
    '<text class="legend" x="{tx}" y="{ty}">{text}</text>'
)
_LINE_KEY = Markup(
    '<line class="{series}" x1="{x}" y1="{y}" x2="{x2}" y2="{y}"/>'
    '<text class="legend" x="{tx}" y="{ty}">{text}</text>'
)
_POLYLINE = Markup('<polyline class="{series}" points="{points}"/>')
_POINT = Markup(
    '<circle class="executed" cx="{x:.1f}" cy="{y:.1f}" r="4" data-value="{value}">'
    "<title>{title}</title></circle>"
)


def _svg(title: str, parts: list[Markup]) -> Markup:
    return _SVG.format(w=WIDTH, h=HEIGHT, title=title, body=Markup("").join(parts))


def _axis(top_label: str) -> list[Markup]:
    return [
        _AXIS.format(x1=LEFT, x2=WIDTH - RIGHT, y=BASE),
        _TICK.format(x=LEFT - 6, y=TOP + 10, text=top_label),
    ]


def bars_chart(groups: Sequence[tuple[str, dict[str, Any]]], title: str, words: Words) -> Markup:
    """Three bars per group (a fund year, a line): appropriated, committed and paid
    (net paid, and for a line in kind the value given)."""
    values = [
        (
            Decimal(amounts["appropriated"]),
            Decimal(amounts["committed"]),
            Decimal(amounts["net_paid"]) + Decimal(amounts["in_kind_value"]),
        )
        for _, amounts in groups
    ]
    top = max((v for trio in values for v in trio), default=Decimal(0)) or Decimal(1)
    group = PLOT_W / max(len(groups), 1)
    bar = min(group / 4, 48)
    parts = _axis(words.money(top))
    for n, ((label, _), trio) in enumerate(zip(groups, values, strict=True)):
        x0 = LEFT + n * group + (group - 3 * bar) / 2
        for k, (series, value) in enumerate(zip(SERIES, trio, strict=True)):
            h = float(value / top) * PLOT_H
            text = f"{label} · {words.field(series)}: {words.money(value)}"
            parts.append(
                _BAR.format(
                    series=series,
                    x=x0 + k * bar,
                    y=BASE - h,
                    w=bar - 2,
                    h=h,
                    value=value,
                    title=text,
                )
            )
        parts.append(_LABEL.format(x=x0 + 1.5 * bar, y=BASE + 18, text=label))
    for k, series in enumerate(SERIES):
        x = LEFT + k * 150
        parts.append(
            _SWATCH.format(
                series=series,
                x=x,
                y=HEIGHT - 22,
                tx=x + 18,
                ty=HEIGHT - 12,
                text=words.field(series),
            )
        )
    return _svg(title, parts)


def cumulative_rates(execution: dict[str, Any]) -> list[tuple[str, Decimal, Decimal]]:
    """Per month of the year: (month, cumulative execution rate at its end, share of the
    year elapsed at its end), both exact."""
    appropriated = Decimal(execution["totals"]["appropriated"])
    year = int(execution["year"])
    days = Decimal(366 if calendar.isleap(year) else 365)
    paid = Decimal(0)
    rows = []
    for index in range(12):
        paid += sum(
            (
                Decimal(line["months"][index]["net_paid"])
                + Decimal(line["months"][index]["in_kind_value"])
                for line in execution["lines"]
            ),
            Decimal(0),
        )
        month_end = date(year, index + 1, calendar.monthrange(year, index + 1)[1])
        elapsed = Decimal(month_end.timetuple().tm_yday) / days
        rate = paid / appropriated if appropriated else Decimal(0)
        rows.append((f"{year}-{index + 1:02d}", rate, elapsed))
    return rows


def execution_chart(
    execution: dict[str, Any], rows: list[tuple[str, Decimal, Decimal]], words: Words
) -> Markup:
    """The year's cumulative execution rate month by month (its `cumulative_rates`, up
    to the report's date) against the share of the year elapsed (序时进度)."""
    on, year = date.fromisoformat(execution["on"]), int(execution["year"])
    shown_months = 0 if on.year < year else 12 if on.year > year else on.month
    top = max([Decimal(1), *(rate for _, rate, _ in rows)])
    step = PLOT_W / 12

    def point(index: int, value: Decimal) -> tuple[float, float]:
        return LEFT + step * (index + 0.5), BASE - float(value / top) * PLOT_H

    def points(values: list[Decimal]) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in map(point, range(len(values)), values))

    parts = [*_axis(words.share(top)), _TICK.format(x=LEFT - 6, y=BASE, text="0%")]
    parts.append(_POLYLINE.format(series="elapsed", points=points([r[2] for r in rows])))
    executed = [rate for _, rate, _ in rows[:shown_months]]
    if executed:
        parts.append(_POLYLINE.format(series="executed", points=points(executed)))
    for index, rate in enumerate(executed):
        x, y = point(index, rate)
        title = f"{words.month(rows[index][0])}: {words.share(rate)}"
        parts.append(_POINT.format(x=x, y=y, value=rate, title=title))
    for index, (month, _, _) in enumerate(rows):
        parts.append(
            _LABEL.format(x=point(index, Decimal(0))[0], y=BASE + 18, text=words.month(month))
        )
    keys = (("executed", words.word("cumulative_rate")), ("elapsed", words.word("elapsed_share")))
    for k, (series, text) in enumerate(keys):
        x = LEFT + k * 200
        parts.append(
            _LINE_KEY.format(
                series=series, x=x, x2=x + 24, y=HEIGHT - 16, tx=x + 30, ty=HEIGHT - 12, text=text
            )
        )
    return _svg(words.word("execution_chart"), parts)
