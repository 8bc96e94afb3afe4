"""The real service ranks a burst first by sort=emergence, and `streamer top --sort` orders
words as GET /words?sort= does."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import BURST, MADE_UP, VOCAB, LiveService, stream, streamer_env


def test_service_sort_emergence_puts_the_burst_first(tmp_path) -> None:
    lines = stream()
    svc = LiveService(tmp_path, known=VOCAB)
    try:
        svc.start()
        for i in range(0, len(lines), 500):
            svc.feed(lines[i:i + 500])
        svc.rescored()
        ranked = svc.words(sort="emergence", new="true", limit=100)
        listed = [w["word"] for w in ranked]
        assert set(MADE_UP) <= set(listed), listed
        assert listed[0] == BURST, [(w["word"], w["emergence"]) for w in ranked[:5]]
        values = [w["emergence"] for w in ranked]
        assert values == sorted(values, reverse=True)
        by_score = [w["word"] for w in svc.words(new="true", limit=100)]
        assert by_score != listed  # the sort is not the score's order
        r = top("--url", svc.url, "--new", "--sort", "emergence", "-n", "3")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[3].split()[1] == BURST, r.stdout
    finally:
        svc.cleanup()


# --------------------------------------------------------------------------- streamer top


def top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamer", "top", *args], capture_output=True,
                          text=True, env=streamer_env(), timeout=60)


def test_top_sorts_an_export_by_emergence(tmp_path) -> None:
    rows = [{"word": "甲乙", "score": 3.0, "count": 90.0, "emergence": 0.0, "new": True,
             "first_seen": "2024-01-01T00:00:00Z"},
            {"word": "丙丁", "score": 2.0, "count": 20.0, "emergence": 9.5, "new": True,
             "first_seen": "2024-01-01T01:00:00Z"},
            {"word": "戊己", "score": 1.0, "count": 30.0, "emergence": None, "new": True,
             "first_seen": "2024-01-01T00:30:00Z"}]
    (tmp_path / "latest.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    order = {}
    for sort in ("score", "emergence", "count", "first_seen", "word"):
        r = top("--export-dir", str(tmp_path), "--sort", sort)
        assert r.returncode == 0, r.stderr
        order[sort] = [line.split()[1] for line in r.stdout.splitlines()[3:]]
    assert order["score"] == ["甲乙", "丙丁", "戊己"]
    assert order["emergence"] == ["丙丁", "甲乙", "戊己"]  # missing value last
    assert order["count"] == ["甲乙", "戊己", "丙丁"]
    assert order["first_seen"] == ["丙丁", "戊己", "甲乙"]
    assert order["word"] == sorted(order["word"])
    bad = top("--export-dir", str(tmp_path), "--sort", "trendiness")
    assert bad.returncode == 2 and "--sort" in bad.stderr and "emergence" in bad.stderr
