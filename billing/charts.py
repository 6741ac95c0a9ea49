"""Server-rendered SVG charts: readable without JavaScript, allowed by the CSP."""

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from accounts.models import Organization
from credits.usage import MonthFlow, monthly_flows

WIDTH, HEIGHT, PAD = 720, 240, 28
# Room on the left for the value axis's numbers and its title.
LEFT = 64
SERIES = [("bought", "Bought"), ("used", "Used"), ("expired", "Expired")]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    label: str


def organization_monthly_bars(
    *, organization: Organization, now: dt.datetime | None = None
) -> dict:
    """The Billing page's chart: months are the organization's calendar months, whoever
    looks (a viewer's own time zone would move a purchase made late on the 31st into
    another month than the one its overage and invoices belong to)."""
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    return monthly_bars(monthly_flows(organization=organization, now=now, zone=zone))


def monthly_bars(flows: list[MonthFlow]) -> dict:
    """Grouped bars per month, scaled to the largest figure."""
    peak = max((getattr(f, s) for f in flows for s, _ in SERIES), default=0) or 1
    plot = HEIGHT - 2 * PAD
    slot = (WIDTH - LEFT) / max(len(flows), 1)
    bar_width = slot / (len(SERIES) + 1)
    bars, months = [], []
    for i, flow in enumerate(flows):
        left = LEFT + i * slot
        months.append({"x": left + slot / 2, "label": flow.month.strftime("%b")})
        for j, (series, name) in enumerate(SERIES):
            value = getattr(flow, series)
            height = plot * value / peak
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
    # The value axis: 0, half the peak and the peak, each with a grid line.
    ticks = [
        {"y": round(HEIGHT - PAD - plot * value / peak, 1), "label": f"{value:,}"}
        for value in sorted({0, peak // 2, peak})
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "baseline": HEIGHT - PAD,
        "peak": peak,
        "bars": bars,
        "months": months,
        "ticks": ticks,
        "series": SERIES,
        # The same figures as a table, for screen readers and for reading exact values.
        "rows": [
            {"month": flow.month, **{series: getattr(flow, series) for series, _ in SERIES}}
            for flow in flows
        ],
    }
