"""An account's synced / skipped / failed entries per hour as stacked bars in inline SVG, drawn on
the server: the operator page needs no script and no file from elsewhere."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from backend.activity_hourly import HourCounts

BAR, GAP, PLOT = 6, 2, 48  # bar width, space between bars, plot height (SVG units)
LABELS = 12  # room under the plot for the time axis
STACK = (("ok", "synced", "#12b76a"), ("skipped", "skipped", "#98a2b3"),
         ("failed", "failed", "#d92d20"))


def svg(hours: Sequence[HourCounts]) -> Markup:
    width = len(hours) * (BAR + GAP)
    peak = max((h.ok + h.skipped + h.failed for h in hours), default=0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
             f'height="{PLOT + LABELS}" viewBox="0 0 {width} {PLOT + LABELS}" role="img" '
             f'aria-label="synced, skipped and failed entries per hour, last {len(hours)} hours">',
             f'<line x1="0" y1="{PLOT}.5" x2="{width}" y2="{PLOT}.5" stroke="#dde3ea"/>']
    parts += [_bar(index, hour, peak) for index, hour in enumerate(hours)]
    parts.append(f'<text x="0" y="{PLOT + LABELS - 1}" font-size="9" fill="#5f6b7a">'
                 f'{len(hours)} h ago</text>')
    parts.append(f'<text x="{width}" y="{PLOT + LABELS - 1}" font-size="9" fill="#5f6b7a" '
                 f'text-anchor="end">now · peak {peak}/h</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (numbers and escaped text only)


def _bar(index: int, hour: HourCounts, peak: int) -> str:
    x = index * (BAR + GAP)
    words = ", ".join(f"{getattr(hour, field)} {word}" for field, word, _ in STACK)
    title = escape(f"{hour.hour:%Y-%m-%d %H:00} UTC: {words}")
    rects, bottom = [], float(PLOT)
    for field, _, colour in STACK:
        value = getattr(hour, field)
        if not value:
            continue
        height = value / peak * PLOT
        bottom -= height
        rects.append(f'<rect x="{x}" y="{bottom:.2f}" width="{BAR}" height="{height:.2f}" '
                     f'fill="{colour}"/>')
    # A transparent full-height target, so an empty hour still tells its time on hover.
    rects.append(f'<rect x="{x}" y="0" width="{BAR}" height="{PLOT}" fill="transparent"/>')
    return f'<g><title>{title}</title>{"".join(rects)}</g>'
