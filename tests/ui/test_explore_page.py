"""AppTest of the Explore page's saved queries on a real migrated database (no data needed:
a station without readings)."""

from __future__ import annotations

import pytest

from tests.ui.test_pages import show, signed_in, texts

pytestmark = pytest.mark.integration

PAGE = "pages/explore.py"


def test_a_shared_query_saved_by_one_user_is_found_by_name_and_loaded_by_another(conn, settings):
    conn.execute("INSERT INTO station (name) VALUES ('Bare Mast')")
    viewer = show(signed_in("viewer"), PAGE)
    viewer.text_area(key="explore_sql").set_value("SELECT station, count(*) AS n FROM readings GROUP BY ALL")
    viewer.text_input(key="explore_save_name").set_value("Values per station")
    viewer.checkbox(key="explore_save_shared").check()
    viewer.button(key="explore_save").click().run()
    assert "Saved as Values per station (shared)." in texts(viewer)

    analyst = show(signed_in("analyst"), PAGE)
    picker = analyst.selectbox(key="explore_saved")
    assert picker.options == ["Values per station — test-viewer"]
    picker.select_index(0).run()
    assert analyst.text_area(key="explore_sql").value.startswith("SELECT station, count(*) AS n FROM readings")
    analyst.text_input(key="explore_save_name").set_value("values PER station")
    analyst.checkbox(key="explore_save_shared").check()
    analyst.button(key="explore_save").click().run()
    assert "test-viewer already shares a query named 'values PER station'" in texts(analyst)
