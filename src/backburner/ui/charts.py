"""Charts for the operator pages as plain geometry: the page draws them as inline SVG, so
they need no JavaScript, no third-party library and no network."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH = 480
HEIGHT = 220
LEFT = 56  # room for the y-axis labels
BOTTOM = 28  # room for the x-axis labels
TOP = 10
# Distinguishable for colour-blind readers (Okabe-Ito), in series order.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    color: str
    tip: str


@dataclass(frozen=True)
class Line:
    points: str
    color: str
    name: str


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    categories: list[str]
    series: dict[str, list[float]]
    ticks: list[tuple[float, str]]  # y position, label
    labels: list[tuple[float, str]]  # x position, label
    rects: list[Rect] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    colors: dict[str, str] = field(default_factory=dict)
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not any(any(values) for values in self.series.values())

    @property
    def baseline(self) -> float:
        return float(self.height - BOTTOM)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def short_number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}" if value >= 1 or value == 0 else f"{value:.3g}"


@dataclass(frozen=True)
class Frame:
    """The axes of one chart: where categories sit, how values scale, which colours."""

    ticks: list[tuple[float, str]]
    labels: list[tuple[float, str]]
    slot: float  # the width given to each category
    scale: float  # pixels per unit of value
    colors: dict[str, str]

    def x(self, index: int, offset: float = 0.5) -> float:
        return LEFT + self.slot * (index + offset)

    def y(self, value: float) -> float:
        return HEIGHT - BOTTOM - value * self.scale


def frame(categories: Sequence[str], series: dict[str, list[float]], top_value: float) -> Frame:
    ceiling = nice_ceiling(top_value)
    plot_height = HEIGHT - BOTTOM - TOP
    ticks = [
        (HEIGHT - BOTTOM - plot_height * i / 4, short_number(ceiling * i / 4)) for i in range(5)
    ]
    slot = (WIDTH - LEFT) / max(1, len(categories))
    every = label_every(len(categories))
    labels = [(LEFT + slot * (i + 0.5), n) for i, n in enumerate(categories) if i % every == 0]
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    return Frame(ticks, labels, slot, plot_height / ceiling, colors)


def highest(series: dict[str, list[float]]) -> float:
    return max((max(values, default=0.0) for values in series.values()), default=0.0)


def tip(category: str, name: str, value: float, unit: str) -> str:
    return f"{category} {name}: {short_number(value)} {unit}".strip()


def chart(
    title: str,
    unit: str,
    categories: Sequence[str],
    series: dict[str, list[float]],
    f: Frame,
    *,
    rects: Sequence[Rect] = (),
    drawn: Sequence[Line] = (),
) -> Chart:
    return Chart(
        title,
        unit,
        list(categories),
        dict(series),
        f.ticks,
        f.labels,
        rects=list(rects),
        lines=list(drawn),
        colors=f.colors,
    )


def label_every(count: int, room: int = 6) -> int:
    """Label every n-th category so that at most about `room` labels fit."""
    return max(1, math.ceil(count / room))


def stacked_bars(
    title: str, unit: str, categories: Sequence[str], series: dict[str, list[float]]
) -> Chart:
    """One bar per category, each series stacked on the previous ones."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(categories))]
    f = frame(categories, series, max(totals, default=0.0))
    rects = []
    for i, category in enumerate(categories):
        below = 0.0
        for name, values in series.items():
            if values[i] <= 0:
                continue
            below += values[i]
            rects.append(
                Rect(
                    x=f.x(i, 0.15),
                    y=f.y(below),
                    width=f.slot * 0.7,
                    height=values[i] * f.scale,
                    color=f.colors[name],
                    tip=tip(category, name, values[i], unit),
                )
            )
    return chart(title, unit, categories, series, f, rects=rects)


def lines(
    title: str, unit: str, categories: Sequence[str], series: dict[str, list[float]]
) -> Chart:
    """One line per series across the categories."""
    f = frame(categories, series, highest(series))
    drawn = [
        Line(
            " ".join(f"{f.x(i):.1f},{f.y(value):.1f}" for i, value in enumerate(values)),
            f.colors[name],
            name,
        )
        for name, values in series.items()
    ]
    return chart(title, unit, categories, series, f, drawn=drawn)


def grouped_bars(
    title: str, unit: str, categories: Sequence[str], series: dict[str, list[float]]
) -> Chart:
    """Per category, one bar per series side by side."""
    f = frame(categories, series, highest(series))
    width = f.slot * 0.8 / max(1, len(series))
    rects = [
        Rect(
            x=f.x(i, 0.1) + width * n,
            y=f.y(values[i]),
            width=width,
            height=values[i] * f.scale,
            color=f.colors[name],
            tip=tip(category, name, values[i], unit),
        )
        for i, category in enumerate(categories)
        for n, (name, values) in enumerate(series.items())
        if values[i] > 0
    ]
    return chart(title, unit, categories, series, f, rects=rects)
