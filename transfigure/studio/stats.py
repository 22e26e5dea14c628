"""Statistics for human perceptual studies: rates with 95% intervals, and their reports.

Both kinds of study reduce to :class:`Record` rows, one per method shown in an answered trial:

* ``real_vs_fake`` -- a participant sees a real photo and a method's fake and picks the one they
  think is real. A *hit* means the participant was fooled (picked the fake); the measure is the
  *fooled rate*, and 50% is as good as a method can do (indistinguishable from real).
* ``closest_style`` -- a participant sees a reference and one candidate per method and picks the
  closest. Each method shown gets a record; the chosen one is the hit. The measure is the *choice
  share*; with k methods, chance is 1/k.

Two intervals are given for every rate:

* **Wilson score interval** -- the binomial interval for ``successes`` out of ``n`` answers. It
  stays within [0, 1] and behaves well at small ``n`` and near 0% or 100% (unlike the normal
  approximation). It assumes the ``n`` answers are independent.
* **Participant bootstrap** -- participants are resampled with replacement and the pooled rate of
  each resample is taken; the percentile interval of those rates is reported. Answers of one
  participant are *not* independent (some people are easily fooled, some never are, some prefer a
  look), so the effective sample size is nearer the number of participants than the number of
  answers. When answers cluster by participant the Wilson interval is too narrow and the bootstrap
  is the honest one; when they do not, the two agree.

Per-question rates (:attr:`StudyResults.questions`) carry the Wilson interval as their bootstrap
too: within one question a participant normally answers once per method, so the answers are
independent across participants and the Wilson interval already is the right one (a bootstrap
there would add only resampling noise and cost).

Standard library only; ``random.Random(seed)`` makes every bootstrap reproducible.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence
from xml.sax.saxutils import escape as xml_escape

Z95 = 1.959963984540054  # two-sided 95% normal quantile

KINDS: dict[str, str] = {"real_vs_fake": "fooled rate", "closest_style": "choice share"}

CSV_COLUMNS = (
    "scope", "question", "method", "successes", "n", "participants", "rate",
    "wilson_low", "wilson_high", "bootstrap_low", "bootstrap_high",
)


@dataclass(frozen=True)
class Record:
    """One method shown in one answered trial."""

    participant: str
    question: str
    method: str
    hit: bool


@dataclass(frozen=True)
class Proportion:
    successes: int
    n: int
    participants: int  # participants who contributed at least one of the n answers
    rate: float  # successes / n (0.0 when n == 0)
    wilson: tuple[float, float]
    bootstrap: tuple[float, float]


@dataclass(frozen=True)
class StudyResults:
    kind: str  # "real_vs_fake" | "closest_style"
    measure: str  # "fooled rate" | "choice share"
    participants: int  # participants with at least one counted answer
    excluded: list[str]  # participants excluded (failed attention checks), as given
    methods: dict[str, Proportion]  # sorted by method name
    questions: dict[str, dict[str, Proportion]]  # question -> method -> Proportion, both sorted


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n``; ``(0.0, 1.0)`` when ``n == 0``."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if not (z > 0 and math.isfinite(z)):
        raise ValueError(f"z must be a positive number, got z={z}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # At 0/n and n/n the bound is exactly 0 or 1 algebraically; rounding error must not move it.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def _quantile(ordered: Sequence[float], q: float) -> float:
    # Linear interpolation between order statistics (numpy's default "linear" method).
    position = (len(ordered) - 1) * q
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def bootstrap_interval(
    per_participant: Sequence[tuple[int, int]],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled rate, resampling participants.

    ``per_participant`` holds one ``(successes, n)`` pair per participant. Each resample draws
    as many participants as given, with replacement, and pools them: ``sum(successes) / sum(n)``.
    Resamples with no answers at all are skipped. Empty input (or no answers) gives ``(0.0, 1.0)``.

    Like any percentile bootstrap it is too narrow with very few participants (one participant
    gives a zero-width interval): read it alongside the Wilson interval when there are under ~10.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got resamples={resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got level={level}")
    successes: list[int] = []
    counts: list[int] = []
    for s, n in per_participant:
        if n < 0 or s < 0 or s > n:
            raise ValueError(f"need 0 <= successes <= n for every participant, got ({s}, {n})")
        successes.append(s)
        counts.append(n)
    if not counts or sum(counts) == 0:
        return (0.0, 1.0)

    rng = random.Random(seed)
    indices = range(len(counts))
    rates: list[float] = []
    for _ in range(resamples):
        drawn = rng.choices(indices, k=len(counts))
        total = sum(counts[i] for i in drawn)
        if total:
            rates.append(sum(successes[i] for i in drawn) / total)
    if not rates:
        return (0.0, 1.0)
    rates.sort()
    alpha = 1 - level
    return (_quantile(rates, alpha / 2), _quantile(rates, 1 - alpha / 2))


def _proportion(per_participant: dict[str, list[int]], resample: bool, resamples: int,
                seed: int) -> Proportion:
    # per_participant: participant -> [successes, n]; sorted so the bootstrap ignores record order.
    pairs = [(per_participant[p][0], per_participant[p][1]) for p in sorted(per_participant)]
    successes = sum(s for s, _ in pairs)
    n = sum(c for _, c in pairs)
    wilson = wilson_interval(successes, n)
    return Proportion(
        successes=successes,
        n=n,
        participants=len(pairs),
        rate=successes / n if n else 0.0,
        wilson=wilson,
        bootstrap=bootstrap_interval(pairs, resamples=resamples, seed=seed) if resample else wilson,
    )


def summarize(
    kind: str,
    records: Iterable[Record],
    excluded: Iterable[str] = (),
    resamples: int = 2000,
    seed: int = 0,
) -> StudyResults:
    """Per-method and per-question rates of a study; records of ``excluded`` participants are dropped.

    Per-method intervals use the participant bootstrap (same ``seed`` for every method); per-question
    ones report the Wilson interval as their bootstrap (see the module docstring).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown study kind {kind!r}; expected one of {sorted(KINDS)}")
    excluded_list = list(excluded)
    dropped = set(excluded_list)

    by_method: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    by_question: dict[str, dict[str, dict[str, list[int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: [0, 0])))
    counted: set[str] = set()
    for record in records:
        if record.participant in dropped:
            continue
        counted.add(record.participant)
        hit = 1 if record.hit else 0
        for cell in (by_method[record.method][record.participant],
                     by_question[record.question][record.method][record.participant]):
            cell[0] += hit
            cell[1] += 1

    methods = {m: _proportion(by_method[m], True, resamples, seed) for m in sorted(by_method)}
    questions = {
        q: {m: _proportion(by_question[q][m], False, resamples, seed) for m in sorted(by_question[q])}
        for q in sorted(by_question)
    }
    return StudyResults(
        kind=kind,
        measure=KINDS[kind],
        participants=len(counted),
        excluded=excluded_list,
        methods=methods,
        questions=questions,
    )


# ---------------------------------------------------------------------------------------------
# Reports


def _rounded(interval: tuple[float, float]) -> list[float]:
    return [round(interval[0], 4), round(interval[1], 4)]


def _proportion_dict(p: Proportion) -> dict:
    return {
        "successes": p.successes,
        "n": p.n,
        "participants": p.participants,
        "rate": round(p.rate, 4),
        "wilson": _rounded(p.wilson),
        "bootstrap": _rounded(p.bootstrap),
    }


def to_json(results: StudyResults) -> str:
    """The results as JSON: fixed key order, methods and questions sorted, floats to 4 decimals."""
    document = {
        "kind": results.kind,
        "measure": results.measure,
        "participants": results.participants,
        "excluded": list(results.excluded),
        "methods": {m: _proportion_dict(p) for m, p in sorted(results.methods.items())},
        "questions": {
            q: {m: _proportion_dict(p) for m, p in sorted(by_method.items())}
            for q, by_method in sorted(results.questions.items())
        },
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def _csv_text(value: str) -> str:
    # Spreadsheets run cells starting with these as formulas; user-given names must stay text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _csv_row(scope: str, question: str, method: str, p: Proportion) -> list:
    return [scope, _csv_text(question), _csv_text(method), p.successes, p.n, p.participants,
            round(p.rate, 4), *_rounded(p.wilson), *_rounded(p.bootstrap)]


def to_csv(results: StudyResults) -> str:
    """One row per method (scope ``method``, empty question), then one per question and method.

    Names starting with ``= + - @`` get a leading ``'`` so spreadsheets show them as text.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for method, p in sorted(results.methods.items()):
        writer.writerow(_csv_row("method", "", method, p))
    for question, by_method in sorted(results.questions.items()):
        for method, p in sorted(by_method.items()):
            writer.writerow(_csv_row("question", question, method, p))
    return out.getvalue()


# Characters XML 1.0 forbids outright: a name holding one would
# make the whole SVG unreadable (and they have no place in a report).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _md_text(value: str) -> str:
    # User text inside a table cell: no HTML, no cell breaks, no line breaks.
    text = html.escape(_NOT_XML.sub("", value).replace("\\", "\\\\"), quote=False)
    text = text.replace("|", "\\|")
    return " ".join(text.split()) or " "


def _percent(rate: float) -> str:
    return f"{100 * rate:.1f}%"


def _percent_interval(interval: tuple[float, float]) -> str:
    return f"{100 * interval[0]:.1f}–{100 * interval[1]:.1f}%"


def to_markdown(results: StudyResults) -> str:
    """A Markdown report: per-method table, participants and exclusions, per-question table."""
    measure = results.measure.capitalize()
    lines = [
        f"## {results.kind.replace('_', ' ')} study: {results.measure} by method",
        "",
        f"| Method | {measure} | Wilson 95% | Participant bootstrap 95% | Answers | Participants |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, p in sorted(results.methods.items()):
        lines.append(f"| {_md_text(method)} | {_percent(p.rate)} | {_percent_interval(p.wilson)} | "
                     f"{_percent_interval(p.bootstrap)} | {p.n} | {p.participants} |")
    if not results.methods:
        lines.append("| (no answers) | | | | | |")
    excluded = ", ".join(_md_text(e) for e in results.excluded) if results.excluded else "none"
    lines += [
        "",
        f"Participants counted: {results.participants}. "
        f"Excluded (failed attention checks): {len(results.excluded)} ({excluded}).",
        "",
        f"### {measure} by question",
        "",
        "Within a question a participant normally answers once per method, so only the Wilson interval "
        "is shown.",
        "",
        f"| Question | Method | {measure} | Wilson 95% | Answers |",
        "|---|---|---:|---:|---:|",
    ]
    for question, by_method in sorted(results.questions.items()):
        for method, p in sorted(by_method.items()):
            lines.append(f"| {_md_text(question)} | {_md_text(method)} | {_percent(p.rate)} | "
                         f"{_percent_interval(p.wilson)} | {p.n} |")
    if not results.questions:
        lines.append("| (no answers) | | | | |")
    return "\n".join(lines) + "\n"


def _svg_text(value: str) -> str:
    return xml_escape(_NOT_XML.sub("", value))


def bar_chart_svg(results: StudyResults, width: int = 640) -> str:
    """A self-contained SVG bar chart: one bar per method with its Wilson 95% interval.

    The y axis runs 0..100%; a dashed line marks chance (50% fooled for ``real_vs_fake``, one in
    k methods for ``closest_style``). Method names are escaped, shortened to fit under their bar,
    and given in full in each bar's ``<title>`` tooltip.
    """
    if width < 200:
        raise ValueError(f"width must be at least 200 pixels, got width={width}")
    left, right, top, bottom, plot_h = 52, 16, 36, 48, 240
    height = top + plot_h + bottom
    plot_w = width - left - right
    methods = sorted(results.methods.items())

    def y(rate: float) -> float:
        return top + plot_h * (1 - rate)

    measure = results.measure
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" role="img">',
        f"<title>{_svg_text(measure.capitalize())} by method, with Wilson 95% intervals</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">'
        f"{_svg_text(measure.capitalize())} by method (Wilson 95% interval)</text>",
    ]
    for tick in (0, 25, 50, 75, 100):
        ty = y(tick / 100)
        parts.append(f'<line x1="{left}" y1="{ty:.1f}" x2="{left + plot_w}" y2="{ty:.1f}" '
                     f'stroke="#dddddd"/>')
        parts.append(f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick}%</text>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333333"/>')

    if not methods:
        parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
                     f'text-anchor="middle" fill="#666666">no answers</text>')
    else:
        slot = plot_w / len(methods)
        bar_w = slot * 0.6
        max_chars = max(3, int(slot // 7))  # ~7 px a character at 12 px
        for i, (method, p) in enumerate(methods):
            centre = left + slot * (i + 0.5)
            low, high = p.wilson
            clean = _NOT_XML.sub("", method)
            label = clean if len(clean) <= max_chars else clean[: max_chars - 1] + "…"
            cap = min(8.0, bar_w / 2)
            parts += [
                "<g>",
                f"<title>{xml_escape(clean)}: {_percent(p.rate)} "
                f"(Wilson 95% {_percent_interval(p.wilson)}; {p.successes}/{p.n} answers, "
                f"{p.participants} participants)</title>",
                f'<rect x="{centre - bar_w / 2:.1f}" y="{y(p.rate):.1f}" width="{bar_w:.1f}" '
                f'height="{plot_h * p.rate:.1f}" fill="#4c78a8"/>',
                f'<line x1="{centre:.1f}" y1="{y(high):.1f}" x2="{centre:.1f}" y2="{y(low):.1f}" '
                f'stroke="#222222" stroke-width="1.5"/>',
                f'<line x1="{centre - cap:.1f}" y1="{y(high):.1f}" x2="{centre + cap:.1f}" '
                f'y2="{y(high):.1f}" stroke="#222222" stroke-width="1.5"/>',
                f'<line x1="{centre - cap:.1f}" y1="{y(low):.1f}" x2="{centre + cap:.1f}" '
                f'y2="{y(low):.1f}" stroke="#222222" stroke-width="1.5"/>',
                f'<text x="{centre + cap + 2:.1f}" y="{y(p.rate) - 4:.1f}" font-size="10">'
                f"{_percent(p.rate)}</text>",
                f'<text x="{centre:.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
                f"{xml_escape(label)}</text>",
                "</g>",
            ]
        # Drawn over the bars so it stays visible.
        cy = y(0.5 if results.kind == "real_vs_fake" else 1 / len(methods))
        parts.append(f'<line x1="{left}" y1="{cy:.1f}" x2="{left + plot_w}" y2="{cy:.1f}" '
                     f'stroke="#888888" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{left + plot_w - 2}" y="{cy - 4:.1f}" text-anchor="end" '
                     f'fill="#666666" font-size="10">chance</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
                 f'stroke="#333333"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
