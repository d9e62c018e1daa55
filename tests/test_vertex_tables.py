"""The Vertex backend's tables: what each model accepts, what it costs, its ids, and the service-account file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.backends.errors import NotSupported
from bot.backends.vertex import DEFAULT_MODELS, CredentialsFileError, load_service_account, resolve_models
from bot.backends.vertex._prices import estimate
from bot.backends.vertex._validate import validate
from tests.vertex_helpers import request

IMG, IMG2, CLIP = Path("a.png"), Path("b.png"), Path("c.mp4")


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"model": "lite"},
        {"model": "lite", "image": IMG, "resolution": "1080p"},
        {"duration": 4},
        {"duration": 6, "aspect": "portrait"},
        {"image": IMG, "last_frame": IMG2},
        {"references": (IMG, IMG2, IMG)},
        {"references": (IMG,), "image": IMG2},
        {"video": CLIP},
        {"resolution": "4k", "model": "quality"},
    ],
    ids=repr,
)
def test_validation_accepts(fields: dict[str, Any]) -> None:
    validate(request(**fields))


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"model": "lite", "resolution": "4k"}, "choose 720p or 1080p"),
        ({"model": "lite", "image": IMG, "last_frame": IMG2}, "use fast or quality"),
        ({"model": "lite", "references": (IMG,)}, "use fast or quality"),
        ({"model": "lite", "video": CLIP}, "use fast or quality"),
        ({"duration": 4, "resolution": "1080p"}, "choose 8 seconds, or use 720p"),
        ({"duration": 6, "resolution": "4k"}, "choose 8 seconds"),
        ({"duration": 4, "references": (IMG,)}, "drop the reference images"),
        ({"duration": 6, "video": CLIP}, "choose 8 seconds"),
        ({"references": (IMG, IMG, IMG, IMG)}, "at most 3"),
        ({"references": (IMG,), "image": IMG, "last_frame": IMG2}, "use one or the other"),
        ({"last_frame": IMG2}, "needs a first frame"),
    ],
    ids=lambda v: v if isinstance(v, str) else repr(v),
)
def test_validation_refuses_in_one_sentence_saying_what_works(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(NotSupported) as caught:
        validate(request(**fields))
    message = str(caught.value)
    assert words in message
    assert message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize(
    ("fields", "usd"),
    [
        ({"model": "quality", "resolution": "1080p"}, 3.20),
        ({"model": "fast", "resolution": "1080p"}, 0.96),
        ({"model": "lite", "resolution": "1080p"}, 0.64),
        ({"model": "fast"}, 0.80),
        ({"model": "fast", "audio": False, "duration": 4}, 0.32),
        ({"model": "quality", "resolution": "4k", "audio": False}, 3.20),
        ({"model": "lite", "duration": 6}, 0.30),
    ],
    ids=repr,
)
def test_price_estimates(fields: dict[str, Any], usd: float) -> None:
    cost = estimate(request(**fields))
    assert cost.unit == "usd"
    assert cost.amount == pytest.approx(usd)


def test_model_table_defaults_and_override() -> None:
    assert resolve_models() == DEFAULT_MODELS
    assert all(not i.endswith("-preview") for i in DEFAULT_MODELS.values())
    assert resolve_models({"fast": " veo-3.2-fast-generate-001 "})["fast"] == "veo-3.2-fast-generate-001"
    with pytest.raises(ValueError, match="unknown model 'turbo'"):
        resolve_models({"turbo": "x"})
    with pytest.raises(ValueError, match="non-empty"):
        resolve_models({"lite": ""})


# --------------------------------------------------------------------------- service-account file

SECRET_MARK = "PRIVATE-CONTENT-MARK"


def _key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _account(**overrides: Any) -> dict[str, Any]:
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": SECRET_MARK,
        "private_key": _key_pem(),
        "client_email": "veo-bot@test-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return info | overrides


def test_service_account_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(_account()))
    creds = load_service_account(path)
    assert creds.service_account_email == "veo-bot@test-project.iam.gserviceaccount.com"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "does not exist"),
        ("dir", "is a directory"),
        (f"{{not json {SECRET_MARK}", "is not JSON"),
        (json.dumps({"type": "authorized_user", "refresh_token": SECRET_MARK}), "not a service-account key file"),
        (json.dumps(_account(private_key=f"-----BEGIN PRIVATE KEY-----{SECRET_MARK}")), "malformed"),
        (json.dumps({"type": "service_account", "private_key_id": SECRET_MARK}), "malformed"),
    ],
    ids=["missing", "directory", "not_json", "not_service_account", "bad_key", "missing_fields"],
)
def test_service_account_file_errors_are_one_line_naming_the_file(
    tmp_path: Path, content: str | None, words: str
) -> None:
    path = tmp_path / "sa.json"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(CredentialsFileError) as caught:
        load_service_account(path)
    message = str(caught.value)
    assert words in message and str(path) in message
    assert "\n" not in message and SECRET_MARK not in message
    err = caught.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
