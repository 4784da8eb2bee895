"""The rater service layer: accounts, login sessions, access rules, the rating queue and submits.

Every function a page calls takes the caller's session ``token`` and checks it here, so the access
rules hold whatever the page code does:

- no valid token (missing, unknown, expired, revoked, or its rater disabled): :class:`AccessDenied`;
- a rater sees and answers only their own assignments and ratings;
- campaigns, progress, other raters and results are for admins only.

Operator functions without a token (:func:`add_user`, :func:`disable_user`) are for the ``raters``
command line, which runs with the catalog's own credentials.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from db.engine import session_scope
from db.models import Assignment, Campaign, CampaignItem, Dataset, Rater, RaterSession, Rating, RatingRevision, Run, Sample, TruthVersion
from raters.corrections import MAX_STROKE_WORK, Stroke, stroke_work

ROLES = ("rater", "admin")
SESSION_HOURS = float(os.environ.get("LIFTLAB_SESSION_HOURS", "8"))
IDLE_MINUTES = float(os.environ.get("LIFTLAB_SESSION_IDLE_MINUTES", "30"))
"""A session ends after this long without a request (each request slides the deadline), and in
any case ``SESSION_HOURS`` after the login."""
COMPLETENESS = ("whole", "partly", "no")
LEAK = ("none", "minor", "major")
ARTIFACTS = ("holes", "halo", "missing_thin", "extra_object")
AB_REASONS = ("edges", "completeness", "background", "artifacts", "other")
MAX_COMMENT = 2000
MAX_NAME = 100
THROTTLE_FREE_FAILURES = int(os.environ.get("LIFTLAB_THROTTLE_FREE_FAILURES", "5"))
"""Consecutive failed logins (per account name and per client) before the backoff starts
(``LIFTLAB_THROTTLE_FREE_FAILURES``, default 5)."""
THROTTLE_MAX_SECONDS = 15 * 60
AUTH_LOG = logging.getLogger("liftlab.raters.auth")


def clean_text(value: str | None, field: str, max_length: int = MAX_COMMENT) -> str | None:
    """A text field as the catalog may store it: no NUL or other control characters (newlines and
    tabs allowed), at most ``max_length`` characters. PostgreSQL refuses NUL in text, and a refused
    statement must never reach a visitor as a traceback.

    Raises:
        ValueError: naming the field.
    """
    if value is None:
        return None
    if len(value) > max_length:
        raise ValueError(f"{field}: at most {max_length} characters")
    bad = [c for c in value if ord(c) < 32 and c not in "\n\r\t" or ord(c) == 127]
    if bad:
        raise ValueError(f"{field}: control characters are not allowed ({', '.join(sorted({repr(c) for c in bad}))})")
    return value


class AccessDenied(PermissionError):
    """The caller is not logged in, or may not see or do this (the message says which)."""


class NotFound(LookupError):
    """No such user, campaign, assignment or rating (named)."""


@dataclass(frozen=True)
class Principal:
    """The logged-in caller: rater id, name and role (``rater`` or ``admin``)."""

    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt: datetime) -> datetime:
    """SQLite returns naive datetimes; the catalog stores UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- accounts (operator) ------------------------------------------------------------------------

def _user(s: Any, name: str) -> Rater:
    """The account ``name`` in ORM session ``s``.

    Raises:
        NotFound: no such user.
    """
    r = s.scalar(select(Rater).where(Rater.name == name))
    if r is None:
        raise NotFound(f"no user named {name!r}")
    return r


def _campaign(conn: Any, name: str) -> Any:
    """``(id, created_at, closed_at)`` of the campaign ``name`` (a session or a connection).

    Raises:
        NotFound: no such campaign.
    """
    row = conn.execute(select(Campaign.id, Campaign.created_at, Campaign.closed_at).where(Campaign.name == name)).first()
    if row is None:
        raise NotFound(f"campaign {name!r} does not exist")
    return row


def _owned(row: Any, p: Principal, what: str, admins_too: bool = False) -> None:
    """Check that ``row`` (with ``rater_id``) exists and is the caller's (or the caller is an admin
    when ``admins_too``).

    Raises:
        NotFound: ``row`` is None. AccessDenied: another rater's.
    """
    if row is None:
        raise NotFound(f"{what} does not exist")
    if row.rater_id != p.id and not (admins_too and p.is_admin):
        raise AccessDenied(f"{what} belongs to another rater")


def add_user(engine: Engine, name: str, password: str, role: str = "rater") -> int:
    """Create an account; the password is stored as an argon2id hash (argon2-cffi defaults).

    Raises:
        ValueError: an empty name, a password under 8 characters, an unknown role, or a name taken.
    """
    name = clean_text(name, "user name", MAX_NAME).strip()
    if not name:
        raise ValueError("user name must not be empty")
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if len(password) < 8:
        raise ValueError(f"user {name!r}: the password must have at least 8 characters")
    try:
        with session_scope(engine) as s:
            r = Rater(name=name, password_hash=_hasher().hash(password), role=role, active=True)
            s.add(r)
            s.flush()
            return r.id
    except IntegrityError:
        raise ValueError(f"user {name!r} already exists") from None


def disable_user(engine: Engine, name: str) -> None:
    """Disable an account and revoke its open sessions.

    Raises:
        NotFound: no such user.
    """
    with session_scope(engine) as s:
        r = _user(s, name)
        r.active = False
        s.execute(update(RaterSession).where(RaterSession.rater_id == r.id).values(revoked=True))


def reset_password(engine: Engine, name: str, password: str) -> None:
    """Set a new password (argon2id) and end the account's open sessions.

    Raises:
        NotFound: no such user. ValueError: a password under 8 characters.
    """
    if len(password) < 8:
        raise ValueError(f"user {name!r}: the password must have at least 8 characters")
    with session_scope(engine) as s:
        r = _user(s, name)
        r.password_hash = _hasher().hash(password)
        s.execute(update(RaterSession).where(RaterSession.rater_id == r.id).values(revoked=True))


def set_role(engine: Engine, name: str, role: str) -> None:
    """Change an account's role.

    Raises:
        NotFound: no such user. ValueError: an unknown role, or it would leave no active admin.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    with session_scope(engine) as s:
        r = _user(s, name)
        if r.role == "admin" and role != "admin":
            admins = s.scalar(select(func.count()).select_from(Rater).where(Rater.role == "admin", Rater.active.is_(True), Rater.id != r.id))
            if not admins:
                raise ValueError(f"{name!r} is the last active admin; make another admin first")
        r.role = role


def admin_users(engine: Engine, token: str | None, action: str, name: str, value: str | None = None) -> None:
    """What the admin's users page does, with the access rule: ``add`` (``value`` = password; role
    rater), ``disable``, ``reset_password`` (``value`` = the new password) or ``role`` (``value`` =
    the role). Admins cannot disable themselves.

    Raises:
        AccessDenied: not an admin. NotFound: no such user. ValueError: as the operation, or an
        unknown action.
    """
    me = require_admin(engine, token)
    if action == "add":
        add_user(engine, name, value or "", "rater")
    elif action == "disable":
        if name == me.name:
            raise ValueError("you cannot disable your own account")
        disable_user(engine, name)
    elif action == "reset_password":
        reset_password(engine, name, value or "")
    elif action == "role":
        set_role(engine, name, value or "")
    else:
        raise ValueError(f"unknown action {action!r}")


def users(engine: Engine, token: str | None) -> list[dict[str, Any]]:
    """Every account (admins only); see :func:`list_users`.

    Raises:
        AccessDenied: not an admin.
    """
    require_admin(engine, token)
    return list_users(engine)


def close_campaign(engine: Engine, token: str | None, campaign: str) -> bool:
    """Close a campaign (admins only): its open items leave every queue; its ratings, results and
    exports stay. Closing a closed campaign changes nothing.

    Returns:
        True when it was open.

    Raises:
        AccessDenied: not an admin. NotFound: no such campaign.
    """
    require_admin(engine, token)
    with session_scope(engine) as s:
        c = _campaign(s, campaign)
        if c.closed_at is not None:
            return False
        s.execute(update(Campaign).where(Campaign.id == c.id).values(closed_at=_now()))
        return True


def reassign_open_items(engine: Engine, token: str | None, campaign: str, rater: str) -> dict[str, int]:
    """Move a disabled rater's unanswered items of a campaign to the active raters of that campaign
    with the fewest items who do not have the item yet (admins only). The assignments move; nothing
    is deleted, and answered items stay where they are.

    Returns:
        ``{"moved": n, "left": m}``: ``left`` items found nobody to take them.

    Raises:
        AccessDenied: not an admin. NotFound: no such campaign or rater. ValueError: the rater is
        still active (disable the account first).
    """
    require_admin(engine, token)
    with session_scope(engine) as s:
        c, r = _campaign(s, campaign), _user(s, rater)
        if r.active:
            raise ValueError(f"{rater!r} is active: disable the account before moving their items")
        mine = s.scalars(select(Assignment).join(CampaignItem, CampaignItem.id == Assignment.item_id)
                         .where(CampaignItem.campaign_id == c.id, Assignment.rater_id == r.id, Assignment.done.is_(False))
                         .order_by(Assignment.position)).all()
        load = dict(s.execute(select(Assignment.rater_id, func.count()).join(CampaignItem, CampaignItem.id == Assignment.item_id)
                              .join(Rater, Rater.id == Assignment.rater_id)
                              .where(CampaignItem.campaign_id == c.id, Rater.active.is_(True)).group_by(Assignment.rater_id)).all())
        last = dict(s.execute(select(Assignment.rater_id, func.max(Assignment.position)).group_by(Assignment.rater_id)).all())
        moved = left = 0
        for a in mine:
            have = set(s.scalars(select(Assignment.rater_id).where(Assignment.item_id == a.item_id)))
            free = sorted((n, rid) for rid, n in load.items() if rid not in have)
            if not free:
                left += 1
                continue
            _, to = free[0]
            last[to] = last.get(to, -1) + 1
            a.rater_id, a.position = to, last[to]
            load[to] += 1
            moved += 1
        return {"moved": moved, "left": left}


def list_users(engine: Engine) -> list[dict[str, Any]]:
    """Every account: ``id, name, role, active`` (never the hash)."""
    with session_scope(engine) as s:
        return [{"id": r.id, "name": r.name, "role": r.role, "active": r.active} for r in s.scalars(select(Rater).order_by(Rater.name))]


# --- sessions -----------------------------------------------------------------------------------

class _Throttle:
    """Consecutive failed logins per key (an account name, a client address), in this process.

    After :data:`THROTTLE_FREE_FAILURES` failures in a row, every further attempt for the key must
    wait ``2 ** (failures - free)`` seconds (capped at :data:`THROTTLE_MAX_SECONDS`) after the last
    failure; an attempt inside that wait is refused without checking the password, so even the right
    one does not get in. A success clears the key. The state lives in the server process (the rater
    app is one process); run several behind a proxy's rate limit as the README's deployment notes say.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fail: dict[str, tuple[int, float]] = {}

    def wait(self, keys: list[str], now: float) -> float:
        with self._lock:
            waits = [0.0]
            for k in keys:
                n, last = self._fail.get(k, (0, 0.0))
                if n >= THROTTLE_FREE_FAILURES:
                    waits.append(last + min(2.0 ** (n - THROTTLE_FREE_FAILURES), THROTTLE_MAX_SECONDS) - now)
            return max(waits)

    def failed(self, keys: list[str], now: float) -> None:
        with self._lock:
            for k in keys:
                self._fail[k] = (self._fail.get(k, (0, 0.0))[0] + 1, now)

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                self._fail.pop(k, None)


THROTTLE = _Throttle()
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    """An argon2id hash of a random password, verified for unknown or disabled names so that every
    login costs one argon2 verification and name existence cannot be read from the time taken."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher().hash(secrets.token_hex(16))
    return _DUMMY_HASH


def login(engine: Engine, name: str, password: str, hours: float | None = None, client: str | None = None,
          clock: Any = time.monotonic) -> str:
    """Check a password and open a session.

    Every attempt costs one argon2 verification (a dummy hash stands in for unknown or disabled
    names), failed attempts are logged (``liftlab.raters.auth``, name and client) and throttled per
    name and per ``client`` (:class:`_Throttle`).

    Args:
        client: the caller's address, for per-client throttling (None: per name only).
        clock: monotonic seconds (tests replace it).

    Returns:
        A random bearer token (URL-safe, 256 bits); only its SHA-256 is stored.

    Raises:
        AccessDenied: unknown user, wrong password or disabled account (one message for all, so a
            caller cannot probe which names exist), or too many failures in a row (with the wait).
    """
    from argon2.exceptions import VerificationError

    keys = [f"name:{name.strip().lower()}"] + ([f"client:{client}"] if client else [])
    wait = THROTTLE.wait(keys, clock())
    if wait > 0:
        AUTH_LOG.warning("login refused while throttled: name=%r client=%r (%.0f s left)", name, client, wait)
        raise AccessDenied(f"too many failed logins; try again in {max(1, round(wait))} s")
    try:
        clean = clean_text(name, "user name", MAX_NAME).strip()
    except ValueError:
        clean = None
    with session_scope(engine) as s:
        r = s.scalar(select(Rater).where(Rater.name == clean)) if clean else None
        usable = r is not None and r.active
        try:
            ok = _hasher().verify(r.password_hash if usable else _dummy_hash(), password) and usable
        except VerificationError:
            ok = False
        if not ok:
            THROTTLE.failed(keys, clock())
            AUTH_LOG.warning("failed login: name=%r client=%r", name, client)
            raise AccessDenied("wrong name or password, or the account is disabled")
        THROTTLE.succeeded(keys)
        token = secrets.token_urlsafe(32)
        now = _now()
        life = timedelta(hours=SESSION_HOURS if hours is None else hours)
        s.add(RaterSession(token_hash=_token_hash(token), rater_id=r.id, created_at=now,
                           expires_at=now + min(life, timedelta(minutes=IDLE_MINUTES)), revoked=False))
        return token


def logout(engine: Engine, token: str | None) -> None:
    """Revoke a session (unknown tokens are ignored)."""
    if not token:
        return
    with session_scope(engine) as s:
        s.execute(update(RaterSession).where(RaterSession.token_hash == _token_hash(token)).values(revoked=True))


def _principal(conn, token: str | None) -> Principal:
    """The caller behind ``token``; a valid session's idle deadline moves to ``now + IDLE_MINUTES``
    (capped at ``SESSION_HOURS`` after the login), written at most once a minute."""
    if not token:
        raise AccessDenied("not logged in")
    row = conn.execute(
        select(RaterSession.id.label("session_id"), RaterSession.revoked, RaterSession.created_at, RaterSession.expires_at,
               Rater.id, Rater.name, Rater.role, Rater.active)
        .join(Rater, Rater.id == RaterSession.rater_id).where(RaterSession.token_hash == _token_hash(token))
    ).first()
    if row is None:
        raise AccessDenied("unknown session: log in again")
    if row.revoked:
        raise AccessDenied("session ended: log in again")
    now = _now()
    expires = _aware(row.expires_at)
    if expires <= now:
        raise AccessDenied("session expired: log in again")
    if not row.active:
        raise AccessDenied(f"account {row.name!r} is disabled")
    cap = _aware(row.created_at) + timedelta(hours=SESSION_HOURS)
    slid = min(cap, now + timedelta(minutes=IDLE_MINUTES))
    if slid - expires > timedelta(minutes=1):
        conn.execute(update(RaterSession).where(RaterSession.id == row.session_id).values(expires_at=slid))
        conn.commit()
    return Principal(row.id, row.name, row.role)


def authenticate(engine: Engine, token: str | None) -> Principal:
    """The caller behind a token.

    Raises:
        AccessDenied: no token, an unknown, revoked or expired one, or a disabled account.
    """
    with engine.connect() as conn:
        return _principal(conn, token)


def require_admin(engine: Engine, token: str | None) -> Principal:
    """The caller, who must be an admin.

    Raises:
        AccessDenied: not logged in, or not an admin.
    """
    p = authenticate(engine, token)
    if not p.is_admin:
        raise AccessDenied(f"{p.name!r} is not an admin: campaigns, progress, other raters and results are for admins")
    return p


# --- answers ------------------------------------------------------------------------------------

class SingleAnswer(BaseModel):
    """The form for one extraction."""

    model_config = ConfigDict(extra="forbid")

    overall: int = Field(ge=1, le=5, description="overall quality, 1 (unusable) to 5 (perfect)")
    edge: int = Field(ge=1, le=5, description="edge quality, 1 to 5")
    completeness: Literal["whole", "partly", "no"]
    background_leak: Literal["none", "minor", "major"]
    artifacts: list[Literal["holes", "halo", "missing_thin", "extra_object"]] = Field(default_factory=list)
    would_use: bool
    comment: str | None = Field(None, max_length=MAX_COMMENT)

    @field_validator("comment")
    @classmethod
    def _clean(cls, v: str | None) -> str | None:
        return clean_text(v, "comment")


class ABAnswer(BaseModel):
    """The form for a blind A/B pair: the side shown as A or B, or a tie, with reasons."""

    model_config = ConfigDict(extra="forbid")

    choice: Literal["A", "B", "tie"]
    reasons: list[Literal["edges", "completeness", "background", "artifacts", "other"]] = Field(default_factory=list)
    comment: str | None = Field(None, max_length=MAX_COMMENT)

    @field_validator("comment")
    @classmethod
    def _clean(cls, v: str | None) -> str | None:
        return clean_text(v, "comment")


MAX_STROKES = 500


class CorrectionAnswer(BaseModel):
    """A corrected mask: brush strokes over the item's starting mask (:mod:`raters.corrections`),
    whether to snap the edited edges to the photo's edges, and a comment."""

    model_config = ConfigDict(extra="forbid")

    strokes: list[Stroke] = Field(default_factory=list, max_length=MAX_STROKES)
    snap: bool = False
    comment: str | None = Field(None, max_length=MAX_COMMENT)

    @field_validator("comment")
    @classmethod
    def _clean(cls, v: str | None) -> str | None:
        return clean_text(v, "comment")

    @field_validator("strokes")
    @classmethod
    def _bounded(cls, v: list[Stroke]) -> list[Stroke]:
        # the server paints every segment's box: bound the pixels visited, so no answer can hold a
        # worker for long (typical corrections use well under 1 % of this)
        work = sum(stroke_work(s) for s in v)
        if work > MAX_STROKE_WORK:
            raise ValueError(f"the strokes would paint {work:.2e} pixel visits, more than {MAX_STROKE_WORK:.0e}: "
                             "use fewer or smaller strokes")
        return v


Answer = SingleAnswer | ABAnswer | CorrectionAnswer


def validate_answer(kind: str, answer: dict[str, Any]) -> Answer:
    """Check a submitted form (``kind``: the campaign's, ``single``, ``ab`` or ``correct``).

    Raises:
        ValueError: a missing or out-of-range field, named (``overall: Input should be less than or
            equal to 5``).
    """
    model = {"ab": ABAnswer, "correct": CorrectionAnswer}.get(kind, SingleAnswer)
    try:
        return model.model_validate(answer)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())) from None


# --- the queue ----------------------------------------------------------------------------------

_RunA, _RunB, _RunLeft = aliased(Run), aliased(Run), aliased(Run)

_QUEUE = (
    select(Assignment.id.label("assignment_id"), Campaign.id.label("campaign_id"), Campaign.name.label("campaign"), Campaign.kind, Campaign.run_a_id,
           Campaign.run_b_id, CampaignItem.left_run_id, Sample.sample_key, Sample.image_path, Dataset.root,
           _RunA.path.label("path_a"), _RunB.path.label("path_b"))
    .join(CampaignItem, CampaignItem.id == Assignment.item_id)
    .join(Campaign, Campaign.id == CampaignItem.campaign_id)
    .join(Sample, Sample.id == CampaignItem.sample_id)
    .join(Dataset, Dataset.id == Sample.dataset_id)
    .join(_RunA, _RunA.id == Campaign.run_a_id)
    .outerjoin(_RunB, _RunB.id == Campaign.run_b_id)
)


def _next_for(conn, rater_id: int) -> dict[str, Any] | None:
    """The rater's next pending assignment as the page needs it (no release names for A/B)."""
    row = conn.execute(
        _QUEUE.where(Assignment.rater_id == rater_id, Assignment.done.is_(False), Campaign.closed_at.is_(None))
        .order_by(Campaign.id, Assignment.position).limit(1)
    ).first()
    if row is None:
        return None
    done, total = conn.execute(  # progress within the item's own campaign ("12 of 30")
        select(func.count().filter(Assignment.done.is_(True)), func.count())
        .join(CampaignItem, CampaignItem.id == Assignment.item_id)
        .where(Assignment.rater_id == rater_id, CampaignItem.campaign_id == row.campaign_id)
    ).one()
    mask = f"predictions/masks/{row.sample_key}.png"
    view = {"assignment_id": row.assignment_id, "campaign": row.campaign, "kind": row.kind, "sample_key": row.sample_key,
            "image": str(Path(row.root) / row.image_path), "done": int(done), "total": int(total)}
    if row.kind == "ab":
        left, right = (row.path_a, row.path_b) if row.left_run_id == row.run_a_id else (row.path_b, row.path_a)
        view["prediction_a"], view["prediction_b"] = str(Path(left) / mask), str(Path(right) / mask)
    else:
        view["prediction"] = str(Path(row.path_a) / mask)
    return view


def next_item(engine: Engine, token: str | None) -> dict[str, Any] | None:
    """The caller's next pending assignment (lowest campaign id, then queue position), or None.

    Returns:
        ``{assignment_id, campaign, kind, sample_key, image, prediction | prediction_a/_b, done,
        total}``; paths are absolute; ``done`` and ``total`` count the caller's items of that
        campaign (a skipped item counts as done). The same call returns the same item until it is answered, so
        a page rerun never swaps the item under the rater.

    Raises:
        AccessDenied: not logged in.
    """
    with engine.connect() as conn:
        return _next_for(conn, _principal(conn, token).id)


ANSWER_FIELDS = ("overall", "edge", "completeness", "background_leak", "artifacts", "would_use", "choice", "reasons",
                 "winner_run_id", "comment")
"""The columns of a rating that hold the rater's answer (what an edit replaces)."""


def _answer_values(row: Any, a: Answer) -> dict[str, Any]:
    """A validated answer as rating columns; ``row`` has the campaign's ``run_a_id``, ``run_b_id``
    and the item's ``left_run_id`` (an A/B choice is stored as shown and as the winning run). A
    correction's rating holds its comment; the mask is a :class:`TruthVersion`."""
    if isinstance(a, CorrectionAnswer):
        return {"comment": a.comment}
    if isinstance(a, ABAnswer):
        right = row.run_b_id if row.left_run_id == row.run_a_id else row.run_a_id
        return {"comment": a.comment, "choice": a.choice, "reasons": list(a.reasons),
                "winner_run_id": {"A": row.left_run_id, "B": right, "tie": None}[a.choice]}
    return {"comment": a.comment, "overall": a.overall, "edge": a.edge, "completeness": a.completeness,
            "background_leak": a.background_leak, "artifacts": list(a.artifacts), "would_use": a.would_use}


def edit_rating(engine: Engine, token: str | None, rating_id: int, answer: dict[str, Any]) -> dict[str, Any]:
    """Change one of the caller's answers while its campaign is open. The answer as it was is kept
    in ``rating_revisions`` (with when it was replaced); the rating row takes the new one, its time
    on task and first submit time unchanged. Results count the newest answer.

    Returns:
        ``{"rating_id", "revisions"}``: how many earlier versions the rating now has.

    Raises:
        AccessDenied: not logged in, or another rater's answer.
        NotFound: no such rating.
        ValueError: an invalid answer (fields named), or the campaign is closed.
    """
    p = authenticate(engine, token)
    with engine.begin() as conn:
        row = conn.execute(
            select(Rating.rater_id, *(getattr(Rating, f) for f in ANSWER_FIELDS), Campaign.kind, Campaign.name.label("campaign"),
                   Campaign.closed_at, Campaign.run_a_id, Campaign.run_b_id, CampaignItem.left_run_id)
            .join(CampaignItem, CampaignItem.id == Rating.item_id).join(Campaign, Campaign.id == CampaignItem.campaign_id)
            .where(Rating.id == rating_id)
        ).first()
        _owned(row, p, f"rating {rating_id}")
        if row.closed_at is not None:
            raise ValueError(f"campaign {row.campaign!r} is closed: its answers are final")
        if row.kind == "correct":
            raise ValueError(f"rating {rating_id} is a correction, stored as a ground-truth version: correct the photo again "
                             "in a new correction campaign instead")
        new = _answer_values(row, validate_answer(row.kind, answer))
        old = {f: getattr(row, f) for f in ANSWER_FIELDS}
        conn.execute(insert(RatingRevision).values(rating_id=rating_id, answer=old, replaced_at=_now()))
        conn.execute(update(Rating).where(Rating.id == rating_id).values(**{f: new.get(f) for f in ANSWER_FIELDS}))
        n = conn.execute(select(func.count()).select_from(RatingRevision).where(RatingRevision.rating_id == rating_id)).scalar_one()
    return {"rating_id": rating_id, "revisions": int(n)}


def _existing(engine: Engine, assignment_id: int) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(Rating.id).where(Rating.assignment_id == assignment_id)).scalar()


def _store(engine: Engine, p: Principal, assignment_id: int, answer: dict[str, Any], seconds: float | None) -> dict[str, Any]:
    if seconds is not None and not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    correction = None
    with engine.connect() as conn:
        kind = conn.execute(select(Campaign.kind).join(CampaignItem, CampaignItem.campaign_id == Campaign.id)
                            .join(Assignment, Assignment.item_id == CampaignItem.id).where(Assignment.id == assignment_id)).scalar()
    if kind == "correct":  # the photo and starting mask are read before the transaction opens
        start = _correction_start(engine, p, assignment_id)
        a = validate_answer(kind, answer)
        correction = (start, _corrected_mask(start, a))
    for attempt in range(3):  # a version number taken by another rater's correction of the photo: take the next
        try:
            with engine.begin() as conn:
                row = conn.execute(
                    select(Assignment.rater_id, Assignment.item_id, Campaign.kind, Campaign.run_a_id, Campaign.run_b_id,
                           CampaignItem.left_run_id, Rating.id.label("rating_id"))
                    .join(CampaignItem, CampaignItem.id == Assignment.item_id)
                    .join(Campaign, Campaign.id == CampaignItem.campaign_id)
                    .outerjoin(Rating, Rating.assignment_id == Assignment.id)
                    .where(Assignment.id == assignment_id)
                ).first()
                _owned(row, p, f"assignment {assignment_id}")
                if row.rating_id is not None:
                    return {"rating_id": row.rating_id, "created": False}
                values: dict[str, Any] = {"assignment_id": assignment_id, "rater_id": p.id, "item_id": row.item_id, "seconds": seconds,
                                          "submitted_at": _now(), **_answer_values(row, validate_answer(row.kind, answer))}
                rid = conn.execute(insert(Rating).values(**values).returning(Rating.id)).scalar_one()
                conn.execute(update(Assignment).where(Assignment.id == assignment_id).values(done=True))
                if correction is not None:
                    _store_truth_version(conn, p, assignment_id, *correction)
                return {"rating_id": rid, "created": True}
        except IntegrityError:  # the same assignment submitted at the same moment: the first one stands
            existing = _existing(engine, assignment_id)
            if existing is not None:
                return {"rating_id": existing, "created": False}
            if correction is None or attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# --- corrections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorrectionStart:
    """What a correction item starts from.

    Attributes:
        assignment_id: the assignment.
        sample_id, sample_key: the photo.
        photo: the photo's path.
        mask: ``(H, W)`` bool starting mask at the photo's size.
        base: ``prediction`` (the campaign run's map at 0.5) or ``truth vN`` (the newest ground
            truth when the item was opened).
        campaign: the campaign's name.
    """

    assignment_id: int
    sample_id: int
    sample_key: str
    photo: str
    mask: Any
    base: str
    campaign: str


def _correction_start(engine: Engine, p: Principal, assignment_id: int) -> CorrectionStart:
    import numpy as np

    from evalhub.datasets import read_mask
    from raters.corrections import png_to_mask, prediction_mask
    from synth.io import BadInput, read_rgb

    with engine.connect() as conn:
        row = conn.execute(
            select(Assignment.rater_id, Campaign.kind, Campaign.name, Campaign.settings, Sample.id.label("sample_id"), Sample.sample_key,
                   Sample.image_path, Sample.mask_path, Dataset.root, Dataset.info, _RunA.path.label("run_path"))
            .join(CampaignItem, CampaignItem.id == Assignment.item_id).join(Campaign, Campaign.id == CampaignItem.campaign_id)
            .join(Sample, Sample.id == CampaignItem.sample_id).join(Dataset, Dataset.id == Sample.dataset_id)
            .join(_RunA, _RunA.id == Campaign.run_a_id).where(Assignment.id == assignment_id)
        ).first()
        _owned(row, p, f"assignment {assignment_id}")
        if row.kind != "correct":
            raise ValueError(f"assignment {assignment_id} is not a correction")
        newest = conn.execute(select(TruthVersion.version, TruthVersion.mask_png).where(TruthVersion.sample_id == row.sample_id)
                              .order_by(TruthVersion.version.desc()).limit(1)).first()
    photo = str(Path(row.root) / row.image_path)
    try:
        h, w = read_rgb(photo).shape[:2]
        if (row.settings or {}).get("start", "prediction") == "prediction":
            mask, base = prediction_mask(row.run_path, row.sample_key, (h, w)), "prediction"
        elif newest is not None:
            mask, base = png_to_mask(newest.mask_png), f"truth v{newest.version}"
        else:
            mask = read_mask(Path(row.root) / row.mask_path, (row.info or {}).get("mask_encoding", "0-255"))
            base = "truth v1"
    except BadInput as exc:
        raise ValueError(f"item of assignment {assignment_id} cannot be shown: {exc.reason}") from None
    if mask.shape != (h, w):
        raise ValueError(f"item of assignment {assignment_id}: mask {mask.shape[1]}x{mask.shape[0]} does not fit the photo {w}x{h}")
    return CorrectionStart(assignment_id, row.sample_id, row.sample_key, photo, np.asarray(mask, bool), base, row.name)


def correction_start(engine: Engine, token: str | None, assignment_id: int) -> CorrectionStart:
    """The photo and starting mask of one of the caller's correction items.

    Raises:
        AccessDenied: not logged in, or another rater's assignment.
        NotFound: no such assignment.
        ValueError: not a correction item, or its photo or starting mask cannot be read (named).
    """
    return _correction_start(engine, authenticate(engine, token), assignment_id)


def _corrected_mask(start: CorrectionStart, a: Answer) -> tuple[Any, bool, list[dict[str, Any]]]:
    from raters.corrections import apply_strokes, snap_to_edges
    from synth.io import read_rgb

    assert isinstance(a, CorrectionAnswer)
    edited = apply_strokes(start.mask, a.strokes)
    if a.snap and a.strokes:
        edited = snap_to_edges(read_rgb(start.photo), edited, edited != start.mask)
    return edited, bool(a.snap and a.strokes), [s.model_dump() for s in a.strokes]


def corrected_mask(engine: Engine, token: str | None, start: CorrectionStart, answer: dict[str, Any]) -> Any:
    """The mask a correction answer would store, for the page's preview (nothing is stored).

    Args:
        start: what :func:`correction_start` gave the caller for the item (not read again).

    Returns:
        ``(H, W)`` bool mask.

    Raises:
        AccessDenied: not logged in, or another rater's item.
        ValueError: an invalid answer (fields named).
    """
    p = authenticate(engine, token)
    with engine.connect() as conn:
        owner = conn.execute(select(Assignment.rater_id).where(Assignment.id == start.assignment_id)).first()
    _owned(owner, p, f"assignment {start.assignment_id}")
    return _corrected_mask(start, validate_answer("correct", answer))[0]


def _store_truth_version(conn: Any, p: Principal, assignment_id: int, start: CorrectionStart,
                         result: tuple[Any, bool, list[dict[str, Any]]]) -> int:
    from raters.corrections import mask_to_png

    mask, snapped, strokes = result
    version = 1 + (conn.execute(select(func.max(TruthVersion.version)).where(TruthVersion.sample_id == start.sample_id)).scalar() or 1)
    h, w = mask.shape
    conn.execute(insert(TruthVersion).values(
        sample_id=start.sample_id, version=version, mask_png=mask_to_png(mask), width=w, height=h, rater_id=p.id, created_at=_now(),
        campaign=start.campaign, assignment_id=assignment_id, base=start.base, strokes=strokes, snapped=snapped))
    return version


def submit(engine: Engine, token: str | None, assignment_id: int, answer: dict[str, Any], seconds: float | None = None) -> dict[str, Any]:
    """Store the answer to one of the caller's assignments, exactly once.

    Idempotent: a repeated submit (double click, rerun, a retry after a timeout, or two at once)
    stores nothing new and returns the first rating (``created`` False); the unique constraint on
    ``ratings.assignment_id`` settles a race.

    Args:
        answer: the form (:class:`SingleAnswer` or :class:`ABAnswer` fields). Comments are stored
            verbatim (parameters are bound, never formatted into SQL).
        seconds: time on task (from showing the item to the submit), >= 0.

    Returns:
        ``{"rating_id", "created"}``.

    Raises:
        AccessDenied: not logged in, or the assignment is another rater's.
        NotFound: no such assignment.
        ValueError: an invalid answer (fields named) or negative seconds.
    """
    return _store(engine, authenticate(engine, token), assignment_id, answer, seconds)


MAX_PROBLEM = 500


def report_problem(engine: Engine, token: str | None, assignment_id: int, reason: str) -> dict[str, Any]:
    """Skip one of the caller's items, saying why (a photo that cannot be shown, a broken cut-out,
    anything else). The item leaves the queue without a rating; admins see the report
    (:func:`problems`). Repeating it changes nothing.

    Returns:
        ``{"reported": bool (False when it was already reported), "next": the next item or None}``.

    Raises:
        AccessDenied: not logged in, or the assignment is another rater's.
        NotFound: no such assignment.
        ValueError: an empty or too long reason, control characters, or the item is already
            answered (its rating stands).
    """
    p = authenticate(engine, token)
    why = (clean_text(reason, "reason", MAX_PROBLEM) or "").strip()
    if not why:
        raise ValueError("reason: say what is wrong with the item")
    with engine.begin() as conn:
        row = conn.execute(select(Assignment.rater_id, Assignment.problem, Rating.id.label("rating_id"))
                           .outerjoin(Rating, Rating.assignment_id == Assignment.id).where(Assignment.id == assignment_id)).first()
        _owned(row, p, f"assignment {assignment_id}")
        if row.rating_id is not None:
            raise ValueError(f"assignment {assignment_id} is already answered; its rating stands")
        reported = row.problem is None
        if reported:
            conn.execute(update(Assignment).where(Assignment.id == assignment_id).values(done=True, problem=why, problem_at=_now()))
        nxt = _next_for(conn, p.id)
    return {"reported": reported, "next": nxt}


def problems(engine: Engine, token: str | None, campaign: str) -> list[dict[str, Any]]:
    """The problems raters reported on a campaign's items (admins only), newest first.

    Returns:
        ``[{"assignment_id", "rater", "sample_key", "problem", "reported_at"}]``.

    Raises:
        AccessDenied: not an admin. NotFound: no such campaign.
    """
    require_admin(engine, token)
    with engine.connect() as conn:
        cid = _campaign(conn, campaign).id
        rows = conn.execute(
            select(Assignment.id, Rater.name, Sample.sample_key, Assignment.problem, Assignment.problem_at)
            .join(CampaignItem, CampaignItem.id == Assignment.item_id).join(Sample, Sample.id == CampaignItem.sample_id)
            .join(Rater, Rater.id == Assignment.rater_id)
            .where(CampaignItem.campaign_id == cid, Assignment.problem.is_not(None)).order_by(Assignment.problem_at.desc(), Assignment.id)
        ).all()
    return [{"assignment_id": r[0], "rater": r[1], "sample_key": r[2], "problem": r[3], "reported_at": _aware(r[4]).isoformat()}
            for r in rows]


def submit_and_next(engine: Engine, token: str | None, assignment_id: int, answer: dict[str, Any],
                    seconds: float | None = None) -> dict[str, Any]:
    """:func:`submit`, then the caller's next item, with one authentication (what the rating page
    calls).

    Returns:
        ``{"rating_id", "created", "next"}`` (``next`` as :func:`next_item`, None when the queue is
        empty).

    Raises:
        as :func:`submit`.
    """
    p = authenticate(engine, token)
    res = _store(engine, p, assignment_id, answer, seconds)
    with engine.connect() as conn:
        res["next"] = _next_for(conn, p.id)
    return res


def _rating_dict(r: Rating, camp: Campaign, key: str) -> dict[str, Any]:
    return {
        "editable": camp.closed_at is None and camp.kind != "correct",
        "rating_id": r.id, "campaign": camp.name, "kind": camp.kind, "sample_key": key, "overall": r.overall, "edge": r.edge,
        "completeness": r.completeness, "background_leak": r.background_leak, "artifacts": r.artifacts, "would_use": r.would_use,
        "choice": r.choice, "reasons": r.reasons, "comment": r.comment, "seconds": r.seconds,
        "submitted_at": _aware(r.submitted_at).isoformat(),
    }


def my_ratings(engine: Engine, token: str | None) -> list[dict[str, Any]]:
    """The caller's own past answers, newest first (A/B answers as shown: A, B or tie).

    Raises:
        AccessDenied: not logged in.
    """
    p = authenticate(engine, token)
    return _ratings_of(engine, p.id)


_RATING_VIEW = (
    select(Rating, Campaign, Sample.sample_key)
    .join(CampaignItem, CampaignItem.id == Rating.item_id)
    .join(Campaign, Campaign.id == CampaignItem.campaign_id)
    .join(Sample, Sample.id == CampaignItem.sample_id)
)
"""A rating with its campaign and photo id, as :func:`_rating_dict` shows it."""


def _ratings_of(engine: Engine, rater_id: int) -> list[dict[str, Any]]:
    with session_scope(engine) as s:
        rows = s.execute(_RATING_VIEW.where(Rating.rater_id == rater_id).order_by(Rating.id.desc())).all()
        return [_rating_dict(r, c, k) for r, c, k in rows]


def get_rating(engine: Engine, token: str | None, rating_id: int) -> dict[str, Any]:
    """One rating, for its author or an admin.

    Raises:
        AccessDenied: not logged in, or another rater's rating.
        NotFound: no such rating.
    """
    p = authenticate(engine, token)
    with session_scope(engine) as s:
        row = s.execute(_RATING_VIEW.where(Rating.id == rating_id)).first()
        if row is None:
            raise NotFound(f"rating {rating_id} does not exist")
        if row[0].rater_id != p.id and not p.is_admin:
            raise AccessDenied(f"rating {rating_id} belongs to another rater")
        return _rating_dict(*row)


def rater_answers(engine: Engine, token: str | None, rater: str) -> list[dict[str, Any]]:
    """Another rater's answers (admins only).

    Raises:
        AccessDenied: not an admin. NotFound: no such rater.
    """
    require_admin(engine, token)
    with session_scope(engine) as s:
        rid = s.scalar(select(Rater.id).where(Rater.name == rater))
    if rid is None:
        raise NotFound(f"no user named {rater!r}")
    return _ratings_of(engine, rid)


def list_campaigns(engine: Engine, token: str | None) -> list[dict[str, Any]]:
    """Every campaign with its item and assignment counts (admins only).

    Raises:
        AccessDenied: not an admin.
    """
    require_admin(engine, token)
    from raters.campaigns import campaign_overview

    return campaign_overview(engine)


def progress(engine: Engine, token: str | None, campaign: str) -> dict[str, Any]:
    """Per-rater progress of a campaign (admins only); see :func:`raters.results.progress_table`.

    Raises:
        AccessDenied: not an admin. NotFound: no such campaign.
    """
    require_admin(engine, token)
    from raters.results import progress_table

    return progress_table(engine, campaign)


def results(engine: Engine, token: str | None, campaign: str, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """A campaign's quality and results (admins only); see :func:`raters.results.campaign_results`.

    Raises:
        AccessDenied: not an admin. NotFound: no such campaign.
    """
    require_admin(engine, token)
    from raters.results import campaign_results

    key = (str(engine.url), campaign, n_boot, seed, _results_state(engine, campaign))
    cached = _RESULTS.get(key)
    if cached is None:
        cached = _RESULTS[key] = campaign_results(engine, campaign, n_boot=n_boot, seed=seed)
        while len(_RESULTS) > 32:  # a small bound: the oldest entries go first
            _RESULTS.pop(next(iter(_RESULTS)))
    return copy.deepcopy(cached)


_RESULTS: dict[tuple[Any, ...], dict[str, Any]] = {}
"""Computed results by campaign and what they were computed from (see :func:`_results_state`)."""


def _results_state(engine: Engine, campaign: str) -> tuple[Any, ...]:
    """What a campaign's results depend on: the campaign itself (id and creation time, so a campaign
    made again under the same name is not taken for the old one), its ratings (count, newest id, and
    the number of edits) and its assignments (count and how many are done). Results are recomputed only when
    this changes, not on every page rerun.

    Raises:
        NotFound: no such campaign.
    """
    with engine.connect() as conn:
        cid, created, _ = _campaign(conn, campaign)
        n_r, last = conn.execute(select(func.count(Rating.id), func.max(Rating.id)).join(CampaignItem, CampaignItem.id == Rating.item_id)
                                 .where(CampaignItem.campaign_id == cid)).one()
        n_rev = conn.execute(select(func.count(RatingRevision.id)).join(Rating, Rating.id == RatingRevision.rating_id)
                             .join(CampaignItem, CampaignItem.id == Rating.item_id).where(CampaignItem.campaign_id == cid)).scalar()
        n_a, n_done = conn.execute(select(func.count(Assignment.id), func.count().filter(Assignment.done.is_(True)))
                                   .join(CampaignItem, CampaignItem.id == Assignment.item_id).where(CampaignItem.campaign_id == cid)).one()
    return cid, str(created), int(n_r), int(last or 0), int(n_rev or 0), int(n_a), int(n_done)
