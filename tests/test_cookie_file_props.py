"""Properties of the cookie file: lossless round trips, order kept, and errors that never echo a value."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.backends.flow.credentials import SESSION_COOKIE, CookieFile
from bot.backends.flow.errors import CookieFileError

NAMES = st.text("abcdefghijklmnopqrstuvwxyz_-ABCXYZ0123456789", min_size=1, max_size=12)
VALUES = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters=";"), max_size=40)
SECRETS = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=12, max_size=24).map(lambda s: f"SECRET{s}")
JSON_LEAVES = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False) | VALUES
JSON = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3), max_leaves=8
)
EXTRA_FIELDS = st.dictionaries(NAMES.filter(lambda n: n not in ("name", "value")), JSON, max_size=4)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def list_exports(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Browser-style exports: unknown fields in any order, a session cookie, one authorization entry."""
    names = draw(
        st.lists(
            NAMES.filter(lambda n: n.lower() != "authorization" and "session-token" not in n),
            unique=True,
            max_size=5,
        )
    )
    names.append(draw(st.sampled_from([SESSION_COOKIE, f"{SESSION_COOKIE}.0"])))
    entries = []
    for name in names:
        extra = draw(EXTRA_FIELDS)
        fields = [("name", name), ("value", draw(VALUES if name != names[-1] else SECRETS)), *extra.items()]
        order = draw(st.permutations(fields))
        entries.append(dict(order))
    auth = {"name": "authorization", "value": f"Bearer ya29.{draw(SECRETS)}", **draw(EXTRA_FIELDS)}
    entries.insert(draw(st.integers(0, len(entries))), auth)
    return entries


@FAST
@given(list_exports(), st.sampled_from([None, 2, 4]))
def test_list_export_round_trips_losslessly(raw: list[dict[str, Any]], indent: int | None) -> None:
    cookies = CookieFile.parse(json.dumps(raw, indent=indent).encode())
    out = json.loads(cookies.to_bytes())
    assert out == raw
    assert [list(e) for e in out] == [list(e) for e in raw]
    assert CookieFile.parse(cookies.to_bytes()) == cookies


@FAST
@given(list_exports(), SECRETS)
def test_with_token_changes_only_the_authorization_value(raw: list[dict[str, Any]], token: str) -> None:
    out = json.loads(CookieFile.parse(json.dumps(raw).encode()).with_token(token).to_bytes())
    assert [list(e) for e in out] == [list(e) for e in raw]
    for before, after in zip(raw, out, strict=True):
        if before["name"] == "authorization":
            assert after == {**before, "value": f"Bearer {token}"}
        else:
            assert after == before


@FAST
@given(list_exports(), st.data())
def test_with_cookies_keeps_order_and_appends(raw: list[dict[str, Any]], data: st.DataObject) -> None:
    cookies = CookieFile.parse(json.dumps(raw).encode())
    existing = [e["name"] for e in raw if e["name"] != "authorization"]
    chosen = data.draw(st.lists(st.sampled_from(existing), unique=True, max_size=3))
    fresh_names = NAMES.filter(lambda n: n not in existing and n != "authorization")
    new = data.draw(st.lists(fresh_names, unique=True, max_size=2))
    updates = {name: data.draw(SECRETS) for name in [*chosen, *new]}
    out = json.loads(cookies.with_cookies(updates).to_bytes())
    assert [e["name"] for e in out] == [e["name"] for e in raw] + new
    for before, after in zip(raw, out, strict=False):
        assert list(after) == list(before)
        assert after["value"] == updates.get(before["name"], before["value"]) or before["name"] == "authorization"


@FAST
@given(st.dictionaries(NAMES, VALUES, max_size=5), SECRETS, SECRETS)
def test_object_export_round_trips(others: dict[str, str], session: str, token: str) -> None:
    others = {k: v for k, v in others.items() if k.lower() != "authorization"}
    raw = {**others, SESSION_COOKIE: session, "authorization": f"Bearer {token}"}
    cookies = CookieFile.parse(json.dumps(raw).encode())
    assert cookies.bearer == token
    assert json.loads(cookies.to_bytes()) == raw
    assert list(json.loads(cookies.to_bytes())) == list(raw)


def _names_and_keys(node: Any) -> set[str]:
    """Every string that is a dict key or a 'name' field: those may be quoted in messages; values may not."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key == "name" and isinstance(value, str):
                found.add(value)
            found |= _names_and_keys(value)
    elif isinstance(node, list):
        for item in node:
            found |= _names_and_keys(item)
    return found


SECRET_JSON = st.recursive(
    st.none() | st.integers() | SECRETS | NAMES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["name", "value", "domain", "x"]) | NAMES, inner, max_size=4)
    ),
    max_leaves=12,
)


def _error_of(data: bytes) -> str | None:
    """The parse error's message, or None when the data is a usable cookie file."""
    try:
        CookieFile.parse(data)
    except CookieFileError as err:
        return str(err)
    return None


@settings(max_examples=100, deadline=None)
@given(SECRET_JSON)
def test_any_json_is_accepted_or_one_line_without_values(doc: Any) -> None:
    message = _error_of(json.dumps(doc).encode())
    if message is not None:
        assert "\n" not in message
        assert "SECRET" not in message or any("SECRET" in s for s in _names_and_keys(doc))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_cookie_file_error(data: bytes) -> None:
    message = _error_of(data)  # anything but CookieFileError escapes and fails the test
    assert message is None or "\n" not in message
