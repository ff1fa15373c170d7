"""A self-contained HTML page for a run folder: summary, config, per-epoch metrics and figures."""

from __future__ import annotations

import html
import json
from pathlib import Path

from bplab.errors import BplabError

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.key { text-align: left; font-family: monospace; }
figure { display: inline-block; margin: 0.5em; } img { max-width: 32em; border: 1px solid #ddd; }
"""

# Marks a page as bplab's, so that a report.html written by someone else is never overwritten.
GENERATOR = "<meta name='generator' content='bplab'>"
RUN_FILES = ("config.json", "summary.json", "metrics.jsonl")


def _written_by_bplab(path: Path) -> bool:
    """Return True for a page with bplab's generator tag or the run-folder line of older pages."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return GENERATOR in text or "<p>Run folder: <code>" in text


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _key_value_table(data: dict) -> str:
    rows = "".join(f"<tr><td class='key'>{html.escape(str(k))}</td>"
                   f"<td>{html.escape(_format(v))}</td></tr>" for k, v in data.items())
    return f"<table>{rows}</table>"


def _metrics_table(records: list[dict]) -> str:
    keys = list(dict.fromkeys(k for record in records for k in record))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_format(r.get(k, '')))}</td>" for k in keys)
                   + "</tr>" for r in records)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html_report(run_dir: str | Path, title: str | None = None) -> Path:
    """Write ``report.html`` into `run_dir` from the files already there; return its path.

    Figures are linked by relative path, so the folder can be moved or zipped as a whole.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BplabError(f"run folder {run_dir} not found" if not run_dir.exists()
                         else f"{run_dir} is not a folder; expected a run folder")
    if not any((run_dir / name).is_file() for name in RUN_FILES):
        raise BplabError(f"{run_dir} is not a run folder: it has none of {', '.join(RUN_FILES)}")
    out = run_dir / "report.html"
    if out.is_file() and not _written_by_bplab(out):
        raise BplabError(f"{out} exists and was not written by bplab; move it away first")
    parts = [f"<h1>{html.escape(title or run_dir.name)}</h1>",
             f"<p>Run folder: <code>{html.escape(str(run_dir.resolve()))}</code></p>"]
    for name, heading in (("summary.json", "Summary"), ("config.json", "Config")):
        path = run_dir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BplabError(f"{path} is not valid JSON: {exc}") from None
            if isinstance(data, dict):
                parts.append(f"<h2>{heading}</h2>{_key_value_table(data)}")
    figures = sorted(p for p in run_dir.iterdir() if p.suffix in (".png", ".gif"))
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [f"<figure><img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'>"
                  f"<figcaption>{html.escape(p.name)}</figcaption></figure>" for p in figures]
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        try:
            records = [json.loads(line) for line in
                       metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BplabError(f"{metrics} is not valid JSON lines: {exc}") from None
        if records:
            parts.append(f"<h2>Metrics per epoch</h2>{_metrics_table(records)}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{GENERATOR}"
            f"<title>{html.escape(title or run_dir.name)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")
    out.write_text(page, encoding="utf-8")
    return out
