import csv
import io
import json
import math
import random
import xml.etree.ElementTree as ET

import pytest

from transfigure.studio.stats import (
    CSV_COLUMNS,
    Z95,
    Proportion,
    Record,
    StudyResults,
    bar_chart_svg,
    bootstrap_interval,
    summarize,
    to_csv,
    to_json,
    to_markdown,
    wilson_interval,
)


def test_wilson_worked_example():
    # 8 fooled out of 20, z = 1.96:
    #   p = 8/20 = 0.4;  z² = 3.8416;  z²/n = 0.19208;  1 + z²/n = 1.19208;  z²/2n = 0.09604
    #   centre     = (0.4 + 0.09604) / 1.19208 = 0.49604 / 1.19208 = 0.416113
    #   p(1-p)/n   = 0.24 / 20 = 0.012;  z²/4n² = 3.8416 / 1600 = 0.002401;  sum = 0.014401
    #   half-width = 1.96 * sqrt(0.014401) / 1.19208 = 1.96 * 0.120004 / 1.19208 = 0.197309
    #   interval   = (0.416113 - 0.197309, 0.416113 + 0.197309) = (0.218804, 0.613422)
    low, high = wilson_interval(8, 20, z=1.96)
    assert low == pytest.approx(0.218804, abs=1e-4)
    assert high == pytest.approx(0.613422, abs=1e-4)
    # The default z is the exact 95% quantile; barely different from 1.96.
    assert wilson_interval(8, 20) == pytest.approx((0.218804, 0.613422), abs=1e-4)
    assert Z95 == pytest.approx(1.96, abs=1e-3)


def test_wilson_edges():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0.0 < high < 1.0
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and 0.0 < low < 1.0
    for n in (1, 2, 5, 1000):
        for s in (0, n // 2, n):
            low, high = wilson_interval(s, n)
            assert 0.0 <= low <= s / n <= high <= 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("successes, n", [(5, 4), (-1, 4), (0, -1)])
def test_wilson_rejects_bad_counts(successes, n):
    with pytest.raises(ValueError, match=f"successes={successes}, n={n}"):
        wilson_interval(successes, n)


def _clustered(participants: int = 20, answers: int = 10) -> list[tuple[int, int]]:
    # Half the participants are always fooled, half never: answers of one person are not independent.
    return [(answers if i % 2 else 0, answers) for i in range(participants)]


def _independent(participants: int = 20, answers: int = 10, p: float = 0.4) -> list[tuple[int, int]]:
    rng = random.Random(1)
    return [(sum(rng.random() < p for _ in range(answers)), answers) for _ in range(participants)]


def _width(interval: tuple[float, float]) -> float:
    return interval[1] - interval[0]


def test_bootstrap_is_deterministic_and_contains_the_pooled_rate():
    data = _independent()
    first = bootstrap_interval(data, resamples=500, seed=3)
    assert first == bootstrap_interval(data, resamples=500, seed=3)
    assert first != bootstrap_interval(data, resamples=500, seed=4)
    pooled = sum(s for s, _ in data) / sum(n for _, n in data)
    assert first[0] < pooled < first[1]


def test_bootstrap_is_wider_than_wilson_when_answers_cluster_by_participant():
    data = _clustered()
    boot = bootstrap_interval(data, resamples=1000, seed=0)
    wilson = wilson_interval(sum(s for s, _ in data), sum(n for _, n in data))
    assert boot[0] < 0.5 < boot[1]
    # 200 answers look like a tight interval, but they are really 20 coin flips of 10 answers each.
    assert _width(boot) > 2 * _width(wilson)


def test_bootstrap_matches_wilson_scale_for_independent_answers():
    data = _independent()
    boot = bootstrap_interval(data, resamples=1000, seed=0)
    wilson = wilson_interval(sum(s for s, _ in data), sum(n for _, n in data))
    assert 0.6 < _width(boot) / _width(wilson) < 1.5


def test_bootstrap_edges():
    assert bootstrap_interval([]) == (0.0, 1.0)
    assert bootstrap_interval([(0, 0), (0, 0)]) == (0.0, 1.0)
    # Participants without answers are skipped within a resample, not counted as 0%.
    assert bootstrap_interval([(3, 3), (0, 0)], resamples=200) == (1.0, 1.0)
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        bootstrap_interval([(4, 3)])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_interval([(1, 2)], resamples=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([(1, 2)], level=1.5)


def _real_vs_fake_records() -> list[Record]:
    # (participant, question, method, fooled)
    answers = [
        ("alice", "q1", "cyclegan", True), ("alice", "q1", "pix2pix", False),
        ("alice", "q2", "cyclegan", False), ("alice", "q2", "pix2pix", False),
        ("bob", "q1", "cyclegan", True), ("bob", "q1", "pix2pix", True),
        ("bob", "q2", "cyclegan", True),
        ("carol", "q1", "cyclegan", False), ("carol", "q2", "pix2pix", True),
        ("mallory", "q1", "cyclegan", True), ("mallory", "q1", "pix2pix", True),
        ("mallory", "q2", "cyclegan", True), ("mallory", "q2", "pix2pix", True),
    ]
    return [Record(*a) for a in answers]


def test_summarize_counts_and_drops_excluded_participants():
    results = summarize("real_vs_fake", _real_vs_fake_records(), excluded=["mallory", "nobody"],
                        resamples=200)
    assert results.kind == "real_vs_fake" and results.measure == "fooled rate"
    assert results.participants == 3
    assert results.excluded == ["mallory", "nobody"]
    assert list(results.methods) == ["cyclegan", "pix2pix"]

    cyclegan = results.methods["cyclegan"]
    assert (cyclegan.successes, cyclegan.n, cyclegan.participants) == (3, 5, 3)
    assert cyclegan.rate == pytest.approx(0.6)
    assert cyclegan.wilson == wilson_interval(3, 5)
    assert cyclegan.bootstrap[0] <= 0.6 <= cyclegan.bootstrap[1]
    pix2pix = results.methods["pix2pix"]
    assert (pix2pix.successes, pix2pix.n, pix2pix.participants) == (2, 4, 3)

    assert list(results.questions) == ["q1", "q2"]
    q1 = results.questions["q1"]
    assert (q1["cyclegan"].successes, q1["cyclegan"].n) == (2, 3)
    assert (q1["pix2pix"].successes, q1["pix2pix"].n) == (1, 2)
    q2 = results.questions["q2"]
    assert (q2["cyclegan"].successes, q2["cyclegan"].n, q2["cyclegan"].participants) == (1, 2, 2)
    assert (q2["pix2pix"].successes, q2["pix2pix"].n) == (1, 2)
    # Per question the Wilson interval stands in for the bootstrap (documented).
    assert q2["pix2pix"].bootstrap == q2["pix2pix"].wilson


def test_summarize_does_not_depend_on_record_order():
    records = _real_vs_fake_records()
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert summarize("real_vs_fake", records, resamples=200) == summarize("real_vs_fake", shuffled,
                                                                          resamples=200)


def test_summarize_counts_only_participants_with_answers():
    records = [Record("a", "q1", "m", True), Record("b", "q1", "m", False)]
    results = summarize("real_vs_fake", records, excluded=("b",), resamples=50)
    assert results.participants == 1
    assert results.methods["m"].n == 1
    empty = summarize("real_vs_fake", [], resamples=50)
    assert empty.participants == 0 and empty.methods == {} and empty.questions == {}


def test_summarize_rejects_unknown_kind():
    with pytest.raises(ValueError, match="best_of"):
        summarize("best_of", [])


def _closest_style_records() -> list[Record]:
    methods = ["cartoongan", "cyclegan", "pix2pix"]
    rng = random.Random(2)
    records = []
    for participant in ["p1", "p2", "p3", "p4", "p5"]:
        for question in ["q1", "q2", "q3"]:
            chosen = rng.choice(methods)
            records += [Record(participant, question, m, m == chosen) for m in methods]
    return records


def test_closest_style_shares_sum_to_one():
    results = summarize("closest_style", _closest_style_records(), resamples=200)
    assert results.measure == "choice share"
    for by_method in results.questions.values():
        assert sum(p.rate for p in by_method.values()) == pytest.approx(1.0)
    assert sum(p.rate for p in results.methods.values()) == pytest.approx(1.0)
    assert all(p.n == 15 for p in results.methods.values())


HOSTILE = '<script>alert("x")</script> & co'


def _hostile_results() -> StudyResults:
    records = _real_vs_fake_records() + [
        Record("alice", "q1", HOSTILE, True), Record("bob", "q1", HOSTILE, False),
        Record("carol", "q1", "=HYPERLINK(1)", True), Record("bob", "q1", "pipe|name\x01", True),
    ]
    return summarize("real_vs_fake", records, excluded=["mallory"], resamples=200)


def test_to_json_parses_back():
    results = _hostile_results()
    text = to_json(results)
    assert text == to_json(results)
    document = json.loads(text)
    assert document["kind"] == "real_vs_fake" and document["participants"] == 3
    assert document["excluded"] == ["mallory"]
    assert list(document["methods"]) == sorted(results.methods)
    cyclegan = document["methods"]["cyclegan"]
    assert cyclegan["successes"] == 3 and cyclegan["n"] == 5 and cyclegan["rate"] == 0.6
    assert cyclegan["wilson"] == [round(x, 4) for x in results.methods["cyclegan"].wilson]
    assert document["questions"]["q1"]["pix2pix"]["n"] == 2


def test_to_csv_parses_back():
    results = _hostile_results()
    rows = list(csv.DictReader(io.StringIO(to_csv(results))))
    assert tuple(rows[0]) == CSV_COLUMNS
    method_rows = [r for r in rows if r["scope"] == "method"]
    question_rows = [r for r in rows if r["scope"] == "question"]
    assert len(method_rows) == len(results.methods)
    assert len(question_rows) == sum(len(q) for q in results.questions.values())
    by_name = {r["method"]: r for r in method_rows}
    assert by_name[HOSTILE]["question"] == ""
    assert (int(by_name["cyclegan"]["successes"]), int(by_name["cyclegan"]["n"])) == (3, 5)
    assert float(by_name["cyclegan"]["wilson_low"]) == pytest.approx(
        results.methods["cyclegan"].wilson[0], abs=1e-4)
    # A name a spreadsheet would run as a formula stays text.
    assert "'=HYPERLINK(1)" in by_name


def test_to_markdown_has_the_method_rows():
    results = _hostile_results()
    text = to_markdown(results)
    cyclegan = results.methods["cyclegan"]
    assert "| cyclegan | 60.0% |" in text
    assert f"{100 * cyclegan.wilson[0]:.1f}–{100 * cyclegan.wilson[1]:.1f}%" in text
    assert "Participants counted: 3" in text and "mallory" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "pipe\\|name |" in text  # control character dropped too
    assert "| q2 | pix2pix | 50.0% |" in text


def test_bar_chart_svg_is_well_formed_and_escapes_names():
    results = _hostile_results()
    svg = bar_chart_svg(results)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert not any(el.tag.endswith("script") for el in root.iter())
    texts = ["".join(el.itertext()) for el in root.iter() if el.tag.endswith(("text", "title"))]
    assert any(HOSTILE in t for t in texts)  # shown in full as text in its tooltip
    assert len(root.findall(".//{http://www.w3.org/2000/svg}rect")) == 1 + len(results.methods)
    for label in ("0%", "50%", "100%", "cyclegan"):
        assert label in texts
    # An empty study still draws a valid chart.
    ET.fromstring(bar_chart_svg(summarize("closest_style", [], resamples=10), width=300))
    with pytest.raises(ValueError, match="width"):
        bar_chart_svg(results, width=50)


def test_proportion_and_results_are_frozen():
    p = Proportion(1, 2, 1, 0.5, (0.1, 0.9), (0.1, 0.9))
    with pytest.raises(AttributeError):
        p.n = 3  # type: ignore[misc]
    assert math.isclose(p.rate, 0.5)
