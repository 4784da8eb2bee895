"""The Streamlit rater app through streamlit.testing's AppTest: login, the rating flow, the A/B flow
and the admin pages, on a real catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Assignment, Campaign, CampaignItem, Rating
from raters.campaigns import create_campaign
from tests.helpers import add_raters, scored_catalog

APP = Path(__file__).resolve().parents[1] / "raters" / "app.py"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    url = f"sqlite:///{tmp / 'catalog.db'}"
    w = scored_catalog(url, tmp, n=20)
    w["pw"] = add_raters(w["engine"], ["single", "ab"])
    create_campaign(w["engine"], "one", [w["runs"]["good"]], 4, 1, raters=["single"], seed=0)
    create_campaign(w["engine"], "pair", [w["runs"]["good"], w["runs"]["eroded"]], 3, 1, raters=["ab"], seed=0)
    w["url"] = url
    return w


def app(world, monkeypatch):
    import sys

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DATABASE_URL", world["url"])
    # AppTest leaves the app script as sys.modules["__main__"]; a spawn or forkserver process pool
    # started later in this process (evalhub scoring's workers) would import it, and so run the app,
    # in every worker. Put the real one back after the test.
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    return at


def press(at, label):
    """Click the button labelled ``label`` and rerun."""
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, at.exception
    return at


def widget(at, kind, key):
    """The form widget ``key`` of the current item (keys end with the assignment id)."""
    return next(w for w in getattr(at, kind) if w.key and w.key.rsplit("_", 1)[0] == key)


def log_in(at, name, password):
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    return press(at, "Log in")


def test_login_refuses_a_wrong_password_then_logs_in_and_out(world, monkeypatch):
    at = app(world, monkeypatch)
    assert at.title[0].value.endswith("log in") and not at.sidebar.radio
    log_in(at, "single", "not-the-password")
    assert "wrong name or password" in at.error[0].value
    log_in(at, "single", world["pw"]["single"])
    assert "Logged in as **single** (rater)" in at.sidebar.markdown[0].value
    assert at.sidebar.radio(key="page").options == ["Rate", "My answers"]  # no admin pages for a rater
    at.sidebar.button(key="logout").click().run()
    assert at.title[0].value.endswith("log in")


def test_rating_flow(world, monkeypatch):
    at = log_in(app(world, monkeypatch), "single", world["pw"]["single"])
    first = at.caption[0].value
    assert first.startswith("one: item 1 of 4")
    rubric = next(e for e in at.expander if e.label.startswith("Rubric"))
    text = " ".join(m.value for m in rubric.markdown)
    for anchor in ("1 unusable", "5 perfect", "*Halo*", "*Partly*", "*Major*", "without editing it"):
        assert anchor in text, anchor
    n_images = len(at.get("image")) or len(at.get("imgs"))  # the element's name in AppTest differs across Streamlit versions
    assert n_images >= 7  # 4 plain backgrounds, overlay, crop locator, zoomed crops (photo and cut-out: the zoom viewer)
    at.run()  # a rerun keeps the same item
    assert at.caption[0].value == first
    press(at, "Submit rating")  # nothing answered
    assert "Please answer" in at.error[0].value
    widget(at, "radio", "q_overall").set_value(2)
    widget(at, "radio", "q_edge").set_value(1)
    widget(at, "radio", "q_completeness").set_value("partly")
    widget(at, "radio", "q_leak").set_value("major")
    widget(at, "multiselect", "q_artifacts").set_value(["halo", "holes"])
    widget(at, "radio", "q_use").set_value("no")
    widget(at, "text_area", "q_comment").input("ear chewed")
    press(at, "Submit rating")
    assert at.caption[0].value.startswith("one: item 2 of 4")  # the next item
    assert at.success[0].value == "Saved your answer to item 1 of 4."
    with session_scope(world["engine"]) as s:
        r = s.scalars(select(Rating).join(Assignment).join(CampaignItem).join(Campaign).where(Campaign.name == "one")).all()
    assert len(r) == 1
    assert (r[0].overall, r[0].edge, r[0].completeness, r[0].background_leak, sorted(r[0].artifacts), r[0].would_use, r[0].comment) == \
        (2, 1, "partly", "major", ["halo", "holes"], False, "ear chewed")
    assert r[0].seconds is not None and r[0].seconds >= 0
    at.sidebar.radio(key="page").set_value("My answers").run()
    assert at.dataframe[0].value["comment"].tolist() == ["ear chewed"]
    # change it: the form shows the answer as given, the new one replaces it, the old one is kept
    assert at.radio(key="e_overall").value == 2 and at.text_area(key="e_comment").value == "ear chewed"
    at.radio(key="e_overall").set_value(4)
    at.text_area(key="e_comment").input("looked again")
    press(at, "Save the change")
    assert "1 earlier version" in at.success[0].value
    from db.models import RatingRevision

    with session_scope(world["engine"]) as s:
        r = s.get(Rating, r[0].id)
        assert (r.overall, r.comment, r.edge) == (4, "looked again", 1)
        old = s.scalars(select(RatingRevision.answer).where(RatingRevision.rating_id == r.id)).all()
    assert [(a["overall"], a["comment"]) for a in old] == [(2, "ear chewed")]


def test_ab_flow(world, monkeypatch):
    at = log_in(app(world, monkeypatch), "ab", world["pw"]["ab"])
    assert at.caption[0].value.startswith("pair: item 1 of 3")
    widget(at, "radio", "q_choice").set_value("B")
    widget(at, "multiselect", "q_reasons").set_value(["edges"])
    press(at, "Submit choice")
    with session_scope(world["engine"]) as s:
        r, item, camp = s.execute(select(Rating, CampaignItem, Campaign).join(CampaignItem, CampaignItem.id == Rating.item_id)
                                  .join(Campaign).where(Campaign.name == "pair")).one()
        right = camp.run_b_id if item.left_run_id == camp.run_a_id else camp.run_a_id
    assert r.choice == "B" and r.reasons == ["edges"] and r.winner_run_id == right  # B is the side shown right


def test_admin_pages(world, monkeypatch):
    at = log_in(app(world, monkeypatch), "root", world["pw"]["root"])
    assert at.sidebar.radio(key="page").options == ["Rate", "My answers", "Campaigns", "Users", "Progress and quality", "Results"]
    at.sidebar.radio(key="page").set_value("Campaigns").run()
    assert {"one", "pair"} <= set(at.dataframe[0].value["name"])
    at.sidebar.radio(key="page").set_value("Users").run()
    at.text_input(key="user_name").input("newbie")
    at.text_input(key="user_value").input("a long password")
    at.radio(key="user_action").set_value("add")
    press(at, "Apply")
    assert "newbie" in at.success[0].value
    from raters import service as S

    assert S.login(world["engine"], "newbie", "a long password")
    at.sidebar.radio(key="page").set_value("Progress and quality").run()
    assert not at.exception, at.exception
    assert at.metric[0].label == "Assignments done"
    at.sidebar.radio(key="page").set_value("Results").run()
    assert not at.exception, at.exception
    assert any("Mean ratings per release" in h.value for h in at.subheader)


def test_a_second_tab_is_told_its_answer_was_not_stored(world, monkeypatch):
    pw = add_raters(world["engine"], ["tabs"], admin=None)
    create_campaign(world["engine"], "tabs", [world["runs"]["good"]], 2, 1, raters=["tabs"], seed=3)
    first, second = (log_in(app(world, monkeypatch), "tabs", pw["tabs"]) for _ in range(2))
    assert first.caption[0].value == second.caption[0].value  # both tabs show the same item

    def answer(at, overall):
        widget(at, "radio", "q_overall").set_value(overall)
        widget(at, "radio", "q_edge").set_value(3)
        widget(at, "radio", "q_completeness").set_value("whole")
        widget(at, "radio", "q_leak").set_value("none")
        widget(at, "radio", "q_use").set_value("yes")
        return press(at, "Submit rating")

    answer(first, 5)
    assert not first.warning
    answer(second, 1)
    assert "already answered" in second.warning[0].value and "was not stored" in second.warning[0].value
    with session_scope(world["engine"]) as s:
        kept = s.scalars(select(Rating.overall).join(CampaignItem, CampaignItem.id == Rating.item_id).join(Campaign)
                         .where(Campaign.name == "tabs")).all()
    assert kept == [5]  # the first answer is the one kept


def test_markdown_in_a_user_name_is_shown_literally(world, monkeypatch):
    pw = add_raters(world["engine"], ["**boss**[x](http://evil)"], admin=None)
    at = log_in(app(world, monkeypatch), "**boss**[x](http://evil)", pw["**boss**[x](http://evil)"])
    shown = at.sidebar.markdown[0].value
    assert shown == "Logged in as **\\*\\*boss\\*\\*\\[x\\]\\(http\\://evil\\)** (rater)", shown


def test_a_photo_that_cannot_be_shown_is_skipped_and_reported_without_a_server_path(world, monkeypatch):
    import synth.io
    from synth.io import BadInput

    pw = add_raters(world["engine"], ["lost"], admin=None)
    create_campaign(world["engine"], "lost", [world["runs"]["good"]], 2, 1, raters=["lost"], seed=4)
    at = log_in(app(world, monkeypatch), "lost", pw["lost"])
    assert at.caption[0].value.startswith("lost: item 1 of 2")

    def unreadable(path):
        raise BadInput(path, "missing")

    monkeypatch.setattr(synth.io, "read_rgb", unreadable)
    at.run()
    shown = " ".join(e.value for e in at.error)
    assert "cannot be shown" in shown and "/" not in shown and ".jpg" not in shown  # no server path
    press(at, "Skip this item and report it")
    assert "skipped" in at.warning[0].value
    assert at.caption[0].value.startswith("lost: item 2 of 2")
    with session_scope(world["engine"]) as s:
        got = s.scalars(select(Assignment.problem).join(CampaignItem).join(Campaign).where(Campaign.name == "lost",
                                                                                           Assignment.problem.is_not(None))).all()
    assert got == ["the photo cannot be shown"]


def test_a_correction_campaign_page_and_its_results(world, monkeypatch):
    from raters import service as S

    pw = add_raters(world["engine"], ["fixer"], admin=None)
    create_campaign(world["engine"], "fixes", [world["runs"]["good"]], 2, 1, raters=["fixer"], seed=0, correct="prediction")
    at = log_in(app(world, monkeypatch), "fixer", pw["fixer"])
    assert at.caption[0].value.startswith("fixes: item 1 of 2")
    assert any(c.value.startswith("What will be stored: 0 stroke(s), 0 pixel(s) changed") for c in at.caption)
    press(at, "Save correction")  # no strokes: the starting mask itself becomes version 2
    assert any(c.value.startswith("fixes: item 2 of 2") for c in at.caption)
    t = S.login(world["engine"], "root", world["pw"]["root"])
    res = S.results(world["engine"], t, "fixes")
    row = res["corrections"]["rows"][0]
    assert res["corrections"]["n"] == 1 and row["rater"] == "fixer" and row["version"] == 2
    assert row["pred_iou_corrected"] == 1.0  # saved unchanged: the prediction is the corrected truth
    admin = log_in(app(world, monkeypatch), "root", world["pw"]["root"])
    admin.sidebar.radio(key="page").set_value("Results").run()
    admin.selectbox(key="admin_campaign").set_value("fixes").run()
    assert not admin.exception, admin.exception
    assert any(h.value == "Ground-truth corrections: 1" for h in admin.subheader)
    admin.sidebar.radio(key="page").set_value("Progress and quality").run()
    assert not admin.exception, admin.exception
