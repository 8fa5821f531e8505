"""The deep-learning report's plot: training and validation loss per epoch (inline SVG in a
self-contained HTML page, like the AutoML report's plots)."""

from __future__ import annotations

from html import escape

from atlas_trainer.reports import _svg


def loss_curve_html(history: list[dict[str, float]], *, title: str) -> str:
    series = [
        ("train loss", "#4c78a8", [(e["epoch"], e["train_loss"]) for e in history]),
        ("validation loss", "#e45756", [(e["epoch"], e["validation_loss"]) for e in history]),
    ]
    svg = _svg.lines(series, title=title, x_label="epoch", y_label="loss")
    rows = "".join(
        f"<tr><td>{int(e['epoch'])}</td><td>{_svg.fmt(e['train_loss'])}</td>"
        f"<td>{_svg.fmt(e['validation_loss'])}</td>"
        f"<td>{_svg.fmt(e['validation_accuracy'])}</td><td>{_svg.fmt(e['seconds'])}</td></tr>"
        for e in history
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"</head><body>{svg}<table><tr><th>epoch</th><th>train loss</th>"
        f"<th>validation loss</th><th>validation accuracy</th><th>seconds</th></tr>{rows}"
        "</table></body></html>"
    )
