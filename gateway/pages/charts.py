"""The report's charts: inline SVG geometry computed on the server (the pages run no JavaScript)."""
from __future__ import annotations

from datetime import datetime

from .filters import SERVICE_LABEL, label


def hbar_chart(rows: list[tuple[str, int | float]], total: int | None = None, unit: str = "",
               width: int = 520, bar_height: int = 24, gap: int = 10, label_width: int = 210) -> dict:
    """Horizontal bars; each row may show a share of ``total``."""
    top = max([v for _, v in rows] + [total or 0, 1])
    plot = width - label_width - 70
    bars = []
    for n, (label, value) in enumerate(rows):
        y = n * (bar_height + gap)
        w = round(plot * value / top, 1)
        share = f" ({round(100 * value / total)}%)" if total else ""
        bars.append({"label": label, "value": value, "y": y, "w": max(w, 1.5 if value else 0),
                     "text": f"{value:,}{unit}{share}", "ty": y + bar_height * 0.68})
    height = max(1, len(rows)) * (bar_height + gap) - gap
    return {"width": width, "height": height, "bars": bars, "bar_height": bar_height,
            "label_width": label_width, "plot": plot}


def column_chart(months: list[str], values: list[int], width: int = 440, height: int = 150) -> dict:
    """One series per month as columns, with the month labels below."""
    top = max(values + [1])
    left, bottom, right, top_pad = 34, 22, 6, 14
    plot_w, plot_h = width - left - right, height - bottom - top_pad
    step = plot_w / max(1, len(values))
    cols = []
    for n, (month, value) in enumerate(zip(months, values)):
        h = round(plot_h * value / top, 1)
        x = round(left + n * step + step * 0.15, 1)
        cols.append({"x": x, "w": round(step * 0.7, 1), "y": round(top_pad + plot_h - h, 1), "h": h,
                     "value": value, "month": _month_label(month), "cx": round(x + step * 0.35, 1),
                     "show_label": (len(months) - 1 - n) % max(1, -(-len(months) // 6)) == 0})
    return {"width": width, "height": height, "cols": cols, "top": top, "left": left,
            "base": top_pad + plot_h, "top_pad": top_pad, "right": width - right}


def _month_label(month: str) -> str:
    return datetime.strptime(month, "%Y-%m").strftime("%b %y")


def report_charts(r: dict) -> dict:
    people, plans, decisions, courses = r["people"], r["plans"], r["decisions"], r["courses"]
    by_count = people["by_initiative_count"]
    return {
        "initiatives": hbar_chart([(f"{n} initiative{'s' if n != '1' else ''}", by_count[n]) for n in by_count],
                                  total=people["with_portfolio"]),
        "by_initiative": hbar_chart([(SERVICE_LABEL[s], v) for s, v in people["by_initiative"].items()],
                                    total=people["with_portfolio"]),
        "plans": hbar_chart([("All plans", plans["total"]),
                             ("What matters recorded", plans["with_priorities"]),
                             ("Agreed with the person", plans["agreed_with_person"]),
                             ("Both", plans["with_priorities_and_agreed_with_person"])], total=plans["total"]),
        "decisions": hbar_chart([("All decisions", decisions["total"]),
                                 ("Person's priorities recorded", decisions["with_priorities"]),
                                 ("Decision recorded", decisions["recorded"]),
                                 ("Recorded, with priorities", decisions["recorded_with_priorities"]),
                                 ("Person's reason recorded", decisions["recorded_with_persons_reason"])],
                                total=decisions["total"]),
        "courses": hbar_chart([("In progress", courses["in_progress"]), ("Completed", courses["completed"]),
                               ("Not completed", courses["not_completed"]), ("Withdrawn", courses["withdrawn"])],
                              total=courses["enrolments"]),
        "budgets": hbar_chart([(label(k), v) for k, v in r["budgets"]["by_status"].items()],
                              total=r["budgets"]["total"]),
        "over_time": {name: column_chart(r["over_time"]["months"], values)
                      for name, values in r["over_time"]["series"].items()},
    }


