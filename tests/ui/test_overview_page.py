"""The Overview page (AppTest) on the stations of ``tests/integration/test_overview.py``:
worst first, coloured statuses, the figures of each card, and the "As of" day."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.integration.test_overview import site  # noqa: F401  (the fixture)
from tests.ui.test_pages import show, signed_in, texts

pytestmark = pytest.mark.integration

PAGE = "pages/overview.py"
WORST_FIRST = ["Elm", "Cedar", "Dogwood", "Birch", "Alder", "Gorse", "Fir"]


def metrics_of(at, label: str) -> list[str]:
    return [m.value for m in at.metric if m.label == label]


def test_cards_worst_first_with_their_figures_as_of_a_past_day(site) -> None:  # noqa: F811
    at = show(signed_in("viewer", as_of="2025-03-30"), PAGE)
    assert at.date_input[0].value == date(2025, 3, 30)
    assert [link.value for link in at.get("page_link")] == WORST_FIRST
    shown = texts(at)
    for badge in (":red-badge[silent · 11.0 d ago]", ":violet-badge[faulty · 10 min ago]",
                  ":orange-badge[late · 4.2 h ago]", ":green-badge[ok · 2.0 h ago]", ":gray-badge[empty]"):
        assert badge in shown
    assert ":red-badge[1 silent] :violet-badge[2 faulty] :orange-badge[1 late] :green-badge[2 ok] " \
           ":gray-badge[1 empty]" in shown
    assert ":violet[no reading in the last day of data: RH_2m_Avg]" in shown
    # in card order: Elm, Cedar, Dogwood, Birch, Alder, Gorse, Fir
    assert metrics_of(at, "Recovery 30 d") == ["63.3 %", "92.2 %", "100.0 %", "98.5 %", "93.6 %", "99.9 %", "–"]
    assert metrics_of(at, "With flagged") == ["63.3 %", "93.9 %", "100.0 %", "98.5 %", "99.6 %", "99.9 %", "–"]
    assert metrics_of(at, "Files 7 d") == ["0", "0", "0", "0", "4", "0", "0"]
    assert metrics_of(at, "Failed") == ["0", "0", "0", "0", "1", "0", "0"]
    assert metrics_of(at, "Findings") == ["1", "0", "1", "1", "2", "0", "0"]


def test_today_by_default_and_the_picker_looks_back(site) -> None:  # noqa: F811
    at = show(signed_in("viewer"), PAGE)
    assert at.date_input[0].value == datetime.now(UTC).date()
    assert [link.value for link in at.get("page_link")] == sorted(WORST_FIRST[:-1]) + ["Fir"]  # all silent in 2026
    assert metrics_of(at, "Recovery 30 d")[:6] == ["0.0 %"] * 6
    at.date_input[0].set_value(date(2025, 3, 30)).run()
    assert not at.exception
    assert [link.value for link in at.get("page_link")] == WORST_FIRST
    assert at.query_params["as_of"] == "2025-03-30"


@pytest.mark.parametrize("asked", ["garbage", "2999-01-01"])
def test_a_bad_or_future_day_in_the_address_means_today(site, asked: str) -> None:  # noqa: F811
    at = show(signed_in("viewer", as_of=asked), PAGE)
    assert at.date_input[0].value == datetime.now(UTC).date()
    assert not at.error
