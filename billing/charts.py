"""Server-rendered SVG charts: readable without JavaScript, allowed by the CSP."""

from dataclasses import dataclass

from credits.selectors import MonthFlow

WIDTH, HEIGHT, PAD = 720, 220, 28
SERIES = [("bought", "Bought"), ("used", "Used"), ("expired", "Expired")]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    label: str


def monthly_bars(flows: list[MonthFlow]) -> dict:
    """Grouped bars per month, scaled to the largest figure."""
    peak = max((getattr(f, s) for f in flows for s, _ in SERIES), default=0) or 1
    slot = (WIDTH - PAD) / max(len(flows), 1)
    bar_width = slot / (len(SERIES) + 1)
    bars, months = [], []
    for i, flow in enumerate(flows):
        left = PAD + i * slot
        months.append({"x": left + slot / 2, "label": flow.month.strftime("%b")})
        for j, (series, name) in enumerate(SERIES):
            value = getattr(flow, series)
            height = (HEIGHT - 2 * PAD) * value / peak
            bars.append(
                Bar(
                    x=round(left + (j + 0.5) * bar_width, 1),
                    y=round(HEIGHT - PAD - height, 1),
                    width=round(bar_width, 1),
                    height=round(height, 1),
                    series=series,
                    label=f"{name} in {flow.month:%B %Y}: {value:,}",
                )
            )
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "baseline": HEIGHT - PAD,
        "peak": peak,
        "bars": bars,
        "months": months,
        "series": SERIES,
    }
