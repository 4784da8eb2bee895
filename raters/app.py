"""The rater app (Streamlit): a thin page layer over :mod:`raters.service`, which enforces every
access rule. Run it with ``raters serve`` (the catalog comes from ``DATABASE_URL``, else
``./liftlab.db``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

import db
from raters import charts, components
from raters import service as S
from raters.render import PLAIN_BACKGROUNDS, checkerboard, composite, crop_locator, fit_alpha, overlay, uncertain_boxes, zoomed_crops

QUESTION_LABELS = {
    "overall": "Overall quality (1 = unusable, 5 = perfect)",
    "edge": "Edge quality (1-5)",
    "completeness": "Is the whole subject there?",
    "background_leak": "Background leaking into the cut-out",
    "artifacts": "Artifacts",
    "would_use": "Would you use this cut-out?",
}
ARTIFACT_LABELS = {"holes": "holes", "halo": "halo", "missing_thin": "missing thin parts", "extra_object": "extra object"}
RUBRIC = """
**Overall quality**
- 1 unusable: the subject is missing or mostly wrong.
- 2 poor: large errors, such as a missing part or a big piece of background kept.
- 3 acceptable with visible flaws: it would need touching up.
- 4 good: small flaws that show only on a close look.
- 5 perfect: no visible error at full size.

**Edge quality**
- 1 wrong everywhere: blocky, or far from the subject.
- 2 many errors: chunks cut off or background fringes along much of the edge.
- 3 mostly right, with jagged or haloed stretches.
- 4 clean except for fine detail (hair, fur, see-through parts).
- 5 clean, fine detail included.

**Completeness.** *Whole*: every part of the subject is in. *Partly*: a part is missing (a limb, an
ear, thin parts). *No*: most of the subject is missing.

**Background leak.** *None*. *Minor*: a thin fringe or a small patch of background is kept.
*Major*: a region you notice at first sight is kept.

**Artifacts.** *Holes*: gaps inside the subject. *Halo*: a rim of the old background around the
edge. *Missing thin parts*: hair, antennae, straps or similar cut off. *Extra object*: another object
or person is kept.

**Would you use this cut-out?** As it is, for a real product photo or post, without editing it.

**A/B.** Pick the cut-out you would rather use. *Tie* only when neither is better; say why.
"""


@st.cache_resource
def _engine_for(url: str):
    return db.connect(url)


def engine():
    """The catalog engine of ``DATABASE_URL`` (else ``./liftlab.db``), one per URL and process."""
    return _engine_for(db.database_url())


def _read_rgb(path: str) -> np.ndarray | None:
    """The photo as RGB (:func:`synth.io.read_rgb`: EXIF orientation, CMYK, 16-bit), None when unreadable."""
    from synth.io import BadInput, read_rgb

    try:
        return read_rgb(path)
    except BadInput:
        return None


def _read_alpha(path: str) -> np.ndarray | None:
    from evalhub.releases import read_probability

    try:
        return read_probability(path)
    except Exception:  # an unreadable prediction is shown as missing, never crashes the page
        return None


def md_escape(text: str) -> str:
    """``text`` shown literally in Streamlit Markdown: every Markdown and HTML special character
    backslash-escaped, so a user name like ``**x**`` or ``[a](http://b)`` is not rendered."""
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!|<>~$:" else c for c in text)


def login_page() -> None:
    st.title("liftlab raters: log in")
    with st.form("login_form"):
        name = st.text_input("Name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        ok = st.form_submit_button("Log in")
    if ok:
        try:
            st.session_state["token"] = S.login(engine(), name, password, client=getattr(st.context, "ip_address", None))
        except S.AccessDenied as exc:
            st.error(str(exc))
            return
        st.session_state.pop("current", None)
        st.session_state.pop("logged_out", None)
        st.rerun()


PHONE_CSS = """
<style>
/* photo and cut-out stay side by side on a phone; the form follows right under them */
.st-key-pair [data-testid="stHorizontalBlock"] { flex-wrap: nowrap !important; }
.st-key-pair [data-testid="stColumn"] { min-width: 0 !important; }
</style>
"""


def _more_views(rgb: np.ndarray, alpha: np.ndarray) -> None:
    """The cut-out on plain backgrounds, the mask overlay and the boundary close-ups, below the form."""
    h, w = rgb.shape[:2]
    with st.expander("More views: plain backgrounds, mask overlay, boundary close-ups", expanded=True):
        cols = st.columns(len(PLAIN_BACKGROUNDS))
        for col, (name, colour) in zip(cols, PLAIN_BACKGROUNDS.items()):
            col.image(composite(rgb, alpha, colour), caption=f"on {name}", width="stretch")
        left, right = st.columns(2)
        opacity = left.slider("Mask overlay opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
        left.image(overlay(rgb, alpha, opacity), caption="mask overlay", width="stretch")
        boxes = uncertain_boxes(fit_alpha(alpha, (h, w)))
        crops = zoomed_crops(rgb, alpha)
        if crops:
            right.caption("Most uncertain parts of the boundary, zoomed; where they are in the photo:")
            right.image(crop_locator(rgb, boxes), width="stretch")
            for i, crop in enumerate(crops, 1):
                right.image(crop, caption=f"{i}", width="stretch")


def _single_form(token: str, item: dict) -> None:
    k = item["assignment_id"]  # widget keys per item: a new item never inherits the last one's answers
    with st.form(f"rate_{k}"):
        st.radio(QUESTION_LABELS["overall"], [1, 2, 3, 4, 5], index=None, horizontal=True, key=f"q_overall_{k}")
        st.radio(QUESTION_LABELS["edge"], [1, 2, 3, 4, 5], index=None, horizontal=True, key=f"q_edge_{k}")
        st.radio(QUESTION_LABELS["completeness"], ["whole", "partly", "no"], index=None, horizontal=True, key=f"q_completeness_{k}")
        st.radio(QUESTION_LABELS["background_leak"], ["none", "minor", "major"], index=None, horizontal=True, key=f"q_leak_{k}")
        st.multiselect(QUESTION_LABELS["artifacts"], list(ARTIFACT_LABELS), format_func=ARTIFACT_LABELS.get, key=f"q_artifacts_{k}")
        st.radio(QUESTION_LABELS["would_use"], ["yes", "no"], index=None, horizontal=True, key=f"q_use_{k}")
        st.text_area("Comment (optional)", key=f"q_comment_{k}")
        # the submit runs in the callback, before the page reruns: the next item is drawn once, not
        # after a render of the answered one
        st.form_submit_button("Submit rating", on_click=_on_submit, args=(token, item, _single_answer))


def _single_answer(k: int) -> dict:
    v = {q: st.session_state.get(f"q_{q}_{k}") for q in ("overall", "edge", "completeness", "leak", "artifacts", "use", "comment")}
    missing = [n for n, q in (("overall quality", "overall"), ("edge quality", "edge"), ("completeness", "completeness"),
                              ("background leak", "leak"), ("would you use it", "use")) if v[q] is None]
    if missing:
        raise ValueError("Please answer: " + ", ".join(missing))
    return {"overall": v["overall"], "edge": v["edge"], "completeness": v["completeness"], "background_leak": v["leak"],
            "artifacts": v["artifacts"] or [], "would_use": v["use"] == "yes", "comment": v["comment"] or None}


def _ab_form(token: str, item: dict) -> None:
    k = item["assignment_id"]
    with st.form(f"ab_{k}"):
        st.radio("Which cut-out is better?", ["A", "B", "tie"], index=None, horizontal=True, key=f"q_choice_{k}")
        st.multiselect("Why?", ["edges", "completeness", "background", "artifacts", "other"], key=f"q_reasons_{k}")
        st.text_area("Comment (optional)", key=f"q_ab_comment_{k}")
        st.form_submit_button("Submit choice", on_click=_on_submit, args=(token, item, _ab_answer))


def _ab_answer(k: int) -> dict:
    choice = st.session_state.get(f"q_choice_{k}")
    if choice is None:
        raise ValueError("Please choose A, B or tie")
    return {"choice": choice, "reasons": st.session_state.get(f"q_reasons_{k}") or [],
            "comment": st.session_state.get(f"q_ab_comment_{k}") or None}


def _on_submit(token: str, item: dict, read) -> None:
    """The form's submit callback: read the answer from the widgets' state and store it."""
    try:
        _store_answer(token, item, read(item["assignment_id"]))
    except (ValueError, S.AccessDenied, S.NotFound) as exc:  # shown on the page the callback leads to
        st.session_state["form_error"] = str(exc)


def _store_answer(token: str, item: dict, answer: dict) -> None:
    """Store one answer and move the page to the next item (the message says what happened).

    Raises:
        ValueError: an invalid answer (fields named).
    """
    res = S.submit_and_next(engine(), token, item["assignment_id"], answer, seconds=time.monotonic() - st.session_state["shown_at"])
    st.session_state["last_rating"] = res["rating_id"]
    st.session_state["answered"] = [item["assignment_id"]]  # its browser draft is dropped on the next page
    if res["created"]:
        st.session_state["saved"] = f"Saved your answer to item {item['done'] + 1} of {item['total']}."
    else:
        # another tab (or a double submit) answered this item first: that answer is the one kept
        st.session_state["notice"] = ("This item was already answered (in another tab or by a double click); "
                                      "the first answer is the one kept, and this one was not stored.")
    st.session_state["current"] = res["next"]
    st.session_state["shown_at"] = time.monotonic()
    if res["next"] is None:
        st.session_state["queue_done"] = True
    for q in ("q_overall", "q_edge", "q_completeness", "q_leak", "q_artifacts", "q_use", "q_comment", "q_choice", "q_reasons", "q_ab_comment",
              "q_snap", "q_fix_comment"):
        st.session_state.pop(f"{q}_{item['assignment_id']}", None)


def _shortcut_help(kind: str) -> None:
    st.caption(components.SHORTCUTS_AB if kind == "ab" else components.SHORTCUTS_SINGLE)


def rate_page(token: str) -> None:
    notice = st.session_state.pop("notice", None)
    if notice:
        st.warning(notice)
    saved = st.session_state.pop("saved", None)
    if saved:
        st.success(saved)
    error = st.session_state.pop("form_error", None)
    if error:
        st.error(error)
    # the current item stays in the session until it is answered: reruns never swap it
    if st.session_state.get("current") is None and not st.session_state.pop("queue_done", False):
        st.session_state["current"] = S.next_item(engine(), token)
        st.session_state["shown_at"] = time.monotonic()
    item = st.session_state["current"]
    answered = st.session_state.get("answered", [])
    if item is None:
        components.form_helper("none", "single", clear=answered, shortcuts=False)
        st.success("Your queue is empty. Thank you!")
        return
    st.caption(f"{md_escape(item['campaign'])}: item {item['done'] + 1} of {item['total']}")
    with st.expander("Rubric: what each answer means"):
        st.markdown(RUBRIC)
    st.html(PHONE_CSS)
    rgb = _read_rgb(item["image"])
    if rgb is None:  # never show the server's path: the rater can skip, the admin sees the report
        st.error("This item's photo cannot be shown.")
        _skip_button(token, item, "the photo cannot be shown")
        return
    if item["kind"] == "correct":
        answer = _correct_item(token, item, rgb)
    elif item["kind"] == "ab":
        a, b = _read_alpha(item["prediction_a"]), _read_alpha(item["prediction_b"])
        if a is None or b is None:
            st.error("A cut-out of this item cannot be shown.")
            _skip_button(token, item, "a cut-out cannot be shown")
            return
        h, w = rgb.shape[:2]
        with st.container(key="pair"):
            components.zoom_pan([("photo", rgb), ("A", composite(rgb, a, checkerboard(h, w))), ("B", composite(rgb, b, checkerboard(h, w)))],
                                item["assignment_id"], key="viewer")
        _shortcut_help("ab")
        _ab_form(token, item)
        answer = None
        components.form_helper(item["assignment_id"], "ab", clear=answered)
        with st.expander("Mask overlays", expanded=True):
            opacity = st.slider("Mask overlay opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
            ca, cb = st.columns(2)
            ca.image(overlay(rgb, a, opacity), caption="A overlay", width="stretch")
            cb.image(overlay(rgb, b, opacity), caption="B overlay", width="stretch")
    else:
        alpha = _read_alpha(item["prediction"])
        if alpha is None:
            st.error("This item's cut-out cannot be shown.")
            _skip_button(token, item, "the cut-out cannot be shown")
            return
        h, w = rgb.shape[:2]
        with st.container(key="pair"):
            components.zoom_pan([("photo", rgb), ("cut-out", composite(rgb, alpha, checkerboard(h, w)))], item["assignment_id"], key="viewer")
        _shortcut_help("single")
        _single_form(token, item)
        answer = None
        components.form_helper(item["assignment_id"], "single", clear=answered)
        _more_views(rgb, alpha)
    with st.expander("Report a problem with this item"):
        reason = st.text_input("What is wrong?", key=f"problem_{item['assignment_id']}")
        if st.button("Skip this item and report it", key=f"report_{item['assignment_id']}"):
            _report(token, item, reason)
    if answer is None:
        return
    try:
        _store_answer(token, item, answer)
    except ValueError as exc:
        st.error(str(exc))
        return
    st.rerun()


def _correct_item(token: str, item: dict, rgb: np.ndarray) -> dict | None:
    """The correction page: the brush over the starting mask, the stored result previewed."""
    k = item["assignment_id"]
    try:
        start = S.correction_start(engine(), token, k)
    except ValueError:
        st.error("This item's starting mask cannot be shown.")
        _skip_button(token, item, "the starting mask cannot be shown")
        return None
    st.write(f"Correct the mask (starting from the {md_escape(start.base)}): **Add** paints subject, **Erase** removes it. "
             "Keys: A add, E erase, P pan, Z undo; wheel or +/- to zoom.")
    strokes = components.brush_editor(rgb, start.mask, k, key=f"brush_{k}")
    snap = st.checkbox("Snap the edited edges to the photo's edges", key=f"q_snap_{k}")
    comment = st.text_input("Comment (optional)", key=f"q_fix_comment_{k}")
    answer = {"strokes": strokes, "snap": snap, "comment": comment or None}
    try:
        result = S.corrected_mask(engine(), token, start, answer)
    except ValueError as exc:
        st.error(str(exc))
        return None
    h, w = rgb.shape[:2]
    changed = int(np.count_nonzero(result != start.mask))
    st.caption(f"What will be stored: {len(strokes)} stroke(s), {changed} pixel(s) changed"
               f"{', edges snapped' if snap and strokes else ''}.")
    with st.container(key="pair"):
        c1, c2 = st.columns(2)
        c1.image(composite(rgb, start.mask.astype(np.float32), checkerboard(h, w)), caption="before", width="stretch")
        c2.image(composite(rgb, result.astype(np.float32), checkerboard(h, w)), caption="after (stored)", width="stretch")
    if st.button("Save correction", key=f"save_{k}", type="primary"):
        return answer
    return None


def _report(token: str, item: dict, reason: str) -> None:
    try:
        res = S.report_problem(engine(), token, item["assignment_id"], reason)
    except ValueError as exc:
        st.error(str(exc))
        return
    st.session_state["notice"] = "Thank you: the item was skipped and an admin will look at it."
    st.session_state["current"] = res["next"]
    st.session_state["shown_at"] = time.monotonic()
    if res["next"] is None:
        st.session_state["queue_done"] = True
    st.rerun()


def _skip_button(token: str, item: dict, reason: str) -> None:
    if st.button("Skip this item and report it", key=f"skip_{item['assignment_id']}"):
        _report(token, item, reason)


def answers_page(token: str) -> None:
    st.header("My answers")
    rows = S.my_ratings(engine(), token)
    if not rows:
        st.info("No answers yet.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    editable = [r for r in rows if r["editable"]]
    if not editable:
        return
    st.subheader("Change an answer (while its campaign is open; the earlier one is kept)")
    pick = st.selectbox("Answer", editable, key="edit_pick",
                        format_func=lambda r: f"{r['campaign']}: photo {r['sample_key']} (answer {r['rating_id']})")

    def at(options, value):
        return options.index(value) if value in options else None

    with st.form("edit_form"):
        if pick["kind"] == "ab":
            choice = st.radio("Which cut-out is better?", ["A", "B", "tie"], index=at(["A", "B", "tie"], pick["choice"]), horizontal=True, key="e_choice")
            reasons = st.multiselect("Why?", ["edges", "completeness", "background", "artifacts", "other"], default=pick["reasons"] or [], key="e_reasons")
        else:
            overall = st.radio(QUESTION_LABELS["overall"], [1, 2, 3, 4, 5], index=at([1, 2, 3, 4, 5], pick["overall"]), horizontal=True, key="e_overall")
            edge = st.radio(QUESTION_LABELS["edge"], [1, 2, 3, 4, 5], index=at([1, 2, 3, 4, 5], pick["edge"]), horizontal=True, key="e_edge")
            completeness = st.radio(QUESTION_LABELS["completeness"], ["whole", "partly", "no"], index=at(["whole", "partly", "no"], pick["completeness"]),
                                    horizontal=True, key="e_completeness")
            leak = st.radio(QUESTION_LABELS["background_leak"], ["none", "minor", "major"], index=at(["none", "minor", "major"], pick["background_leak"]),
                            horizontal=True, key="e_leak")
            artifacts = st.multiselect(QUESTION_LABELS["artifacts"], list(ARTIFACT_LABELS), default=pick["artifacts"] or [],
                                       format_func=ARTIFACT_LABELS.get, key="e_artifacts")
            use = st.radio(QUESTION_LABELS["would_use"], ["yes", "no"], index=at([True, False], pick["would_use"]), horizontal=True, key="e_use")
        comment = st.text_area("Comment (optional)", value=pick["comment"] or "", key="e_comment")
        go = st.form_submit_button("Save the change")
    if not go:
        return
    if pick["kind"] == "ab":
        answer = {"choice": choice, "reasons": reasons, "comment": comment or None}
    else:
        answer = {"overall": overall, "edge": edge, "completeness": completeness, "background_leak": leak, "artifacts": artifacts,
                  "would_use": None if use is None else use == "yes", "comment": comment or None}
    try:
        res = S.edit_rating(engine(), token, pick["rating_id"], answer)
    except ValueError as exc:
        st.error(str(exc))
        return
    st.success(f"Changed answer {res['rating_id']}; its {res['revisions']} earlier version(s) are kept.")


def campaigns_page(token: str) -> None:
    st.header("Campaigns")
    camps = S.list_campaigns(engine(), token)
    st.dataframe(pd.DataFrame(camps), hide_index=True)
    open_names = [c["name"] for c in camps if c.get("status") == "open"]
    if not open_names:
        return
    with st.form("campaign_admin"):
        name = st.selectbox("Campaign", open_names, key="manage_campaign")
        rater = st.text_input("Disabled rater whose open items move to others", key="manage_rater")
        move = st.form_submit_button("Move their open items")
        close = st.form_submit_button("Close the campaign")
    try:
        if move:
            res = S.reassign_open_items(engine(), token, name, rater.strip())
            st.success(f"moved {res['moved']} item(s); {res['left']} found nobody free to take them")
        if close and S.close_campaign(engine(), token, name):
            st.success(f"closed {md_escape(name)}: its open items left the queues; its ratings stay")
    except (ValueError, S.NotFound) as exc:
        st.error(str(exc))


def users_page(token: str) -> None:
    st.header("Users")
    st.dataframe(pd.DataFrame(S.users(engine(), token)), hide_index=True)
    with st.form("user_admin"):
        name = st.text_input("User name", key="user_name")
        value = st.text_input("Password (add, reset) or role (rater, admin)", type="password", key="user_value")
        action = st.radio("Action", ["add", "disable", "reset_password", "role"], horizontal=True, key="user_action",
                          format_func={"add": "add a rater", "disable": "disable", "reset_password": "reset password",
                                       "role": "change role"}.get)
        go = st.form_submit_button("Apply")
    if go:
        try:
            S.admin_users(engine(), token, action, name.strip(), value)
            st.success(f"{action.replace('_', ' ')}: {md_escape(name.strip())} done")
        except (ValueError, S.NotFound) as exc:
            st.error(str(exc))


def _pick_campaign(token: str) -> str | None:
    names = [c["name"] for c in S.list_campaigns(engine(), token)]
    if not names:
        st.info("No campaign yet: create one with `raters campaign create`.")
        return None
    return st.selectbox("Campaign", names, key="admin_campaign")


def quality_page(token: str) -> None:
    st.header("Progress and quality")
    name = _pick_campaign(token)
    if name is None:
        return
    prog = S.progress(engine(), token, name)
    st.metric("Assignments done", f"{prog['done']} / {prog['total']}")
    st.metric("Items with all their ratings", f"{prog['items_complete']} / {prog['items']}")
    st.dataframe(pd.DataFrame(prog["raters"]), hide_index=True)
    res = S.results(engine(), token, name, n_boot=300)
    st.subheader("Gold accuracy per rater")
    st.dataframe(pd.DataFrame(res.get("gold_accuracy", [])), hide_index=True)
    st.subheader("Krippendorff's alpha per question")
    alphas = {k: v for k, v in res.get("krippendorff_alpha", {}).items() if v is not None}
    if alphas:
        st.dataframe(pd.DataFrame([{"question": k, "alpha": v} for k, v in alphas.items()]), hide_index=True)
    else:
        st.caption("No alpha yet: agreement needs at least two raters on the same item, and no item has two answers so far.")
    st.subheader("Time-on-task outliers (modified z > 3.5)")
    st.dataframe(pd.DataFrame(res["time_on_task"]["outliers"]), hide_index=True)
    st.subheader("Problems raters reported (skipped items)")
    reported = S.problems(engine(), token, name)
    if reported:
        st.dataframe(pd.DataFrame(reported), hide_index=True)
    else:
        st.caption("None.")


def results_page(token: str) -> None:
    st.header("Results")
    name = _pick_campaign(token)
    if name is None:
        return
    res = S.results(engine(), token, name, n_boot=300)
    if res["campaign"]["kind"] == "correct":
        c = res["corrections"]
        st.subheader(f"Ground-truth corrections: {c['n']}")
        if not c["n"]:
            st.caption("No correction saved yet.")
        else:
            st.write({"mean IoU of the corrected mask with the original ground truth": c["mean_iou_with_original"],
                      "mean IoU of the run's prediction with the original ground truth": c["mean_pred_iou_original"],
                      "mean IoU of the run's prediction with the corrected ground truth": c["mean_pred_iou_corrected"]})
            st.dataframe(pd.DataFrame(c["rows"]), hide_index=True)
            agree = c["agreement"]
            st.caption(f"Agreement: mean pairwise IoU {agree['mean_pairwise_iou']:.3f} over {agree['n_photos']} photo(s) corrected by several raters"
                       if agree["mean_pairwise_iou"] is not None else "Agreement: no photo was corrected by two raters.")
    elif res["campaign"]["kind"] == "ab":
        st.subheader("Bradley-Terry scores (95% CI) and win rates")
        bt = res["bradley_terry"]
        if bt["scores"]:
            st.image(charts.png(charts.bradley_terry(bt["scores"])), width=480)
        else:
            st.caption("No votes yet, so no scores.")
        st.dataframe(pd.DataFrame([{"release": k, **v, "win_rate": bt["win_rate"].get(k)} for k, v in bt["scores"].items()]), hide_index=True)
        v = res["votes"]
        st.write(f"{v['n']} votes, {v['ties']} ties; " + ", ".join(f"{k[5:]}: {n}" for k, n in v.items() if k.startswith("wins_")))
        hm = res["human_vs_metric"]
        st.write({k: val for k, val in hm.items() if k.startswith("spearman")})
    else:
        st.subheader("Mean ratings per release (95% bootstrap CI over items)")
        st.dataframe(pd.DataFrame([{"release": rel, "question": q, **v} for rel, qs in res["per_release"].items() for q, v in qs.items()]),
                     hide_index=True)
        st.subheader("Dawid-Skene aggregated answers")
        st.dataframe(pd.DataFrame([{"question": q, "answer": a, "share": s} for q, d in res["dawid_skene"].items()
                                   for a, s in d["distribution"].items()]), hide_index=True)
        hm = res["human_vs_metric"]
        st.subheader("Human against metric")
        st.write({k: hm.get(k) for k in ("spearman_overall_iou", "spearman_overall_boundary_f1")})
        left, right = st.columns(2)
        if hm.get("points"):
            left.image(charts.png(charts.human_vs_metric(hm["points"], hm["mismatches"])), caption="each item; mismatches in red (shown below)")
        else:
            left.caption("No rated items yet.")
        if "gate_vs_would_use" in hm:
            right.image(charts.png(charts.reliability(hm["gate_vs_would_use"])), caption="reliability diagram")
        mismatches = []
        for kind, title in (("metric_high_rating_low", "High IoU, low rating"), ("metric_low_rating_high", "Low IoU, high rating")):
            rows = hm["mismatches"][kind]
            st.caption(f"{title}: {len(rows)}")
            mismatches += [(f"{title}: {r['sample_key']} (IoU {r['iou']:.3f}, rating {r['overall']:.2f})", r) for r in rows]
        if mismatches:
            label = st.selectbox("Open a mismatch", [m[0] for m in mismatches], key="mismatch")
            r = dict(mismatches)[label]
            img = _read_rgb(r["image"])
            pred = _read_alpha(str(Path(res["campaign"]["run_a"]["path"]) / "predictions" / "masks" / f"{r['sample_key']}.png"))
            if img is None or pred is None:
                st.caption("Its photo or cut-out cannot be shown.")
            else:
                h, w = img.shape[:2]
                components.zoom_pan([("photo", img), ("cut-out", composite(img, pred, checkerboard(h, w)))], r["sample_key"], key="mismatch_view")
    from raters.results import neutralize_formulas, ratings_frame

    _, frame = ratings_frame(engine(), name)
    st.download_button("Download ratings (CSV)", neutralize_formulas(frame).to_csv(index=False), file_name=f"{name}-ratings.csv", key="download")


def main() -> None:
    st.set_page_config(page_title="liftlab raters", layout="wide")
    token = st.session_state.get("token")
    if token is None and not st.session_state.get("logged_out"):
        token = components.cookie_token()  # a reload keeps the login (the server still checks the session)
    try:
        me = S.authenticate(engine(), token)
    except S.AccessDenied as exc:
        if st.session_state.get("token"):
            st.warning(str(exc))
        st.session_state.pop("token", None)
        if token or st.session_state.get("logged_out"):
            components.session_cookie(None, 0)
        login_page()
        return
    st.session_state["token"] = token
    components.session_cookie(token, int(S.SESSION_HOURS * 3600))
    st.sidebar.write(f"Logged in as **{md_escape(me.name)}** ({me.role})")
    if st.sidebar.button("Log out", key="logout"):
        S.logout(engine(), token)
        st.session_state.clear()
        st.session_state["logged_out"] = True
        st.rerun()
    pages = {"Rate": rate_page, "My answers": answers_page}
    if me.is_admin:
        pages.update({"Campaigns": campaigns_page, "Users": users_page, "Progress and quality": quality_page, "Results": results_page})
    choice = st.sidebar.radio("Page", list(pages), key="page")
    try:
        pages[choice](token)
    except S.AccessDenied as exc:
        st.error(str(exc))

main()
