"""Every piece of wording a user sees about a failure, in one place.

Upstream text (Flow's messages, internal traces) is never shown; we map codes and types to sentences
that say what happened and what to do.
"""

from __future__ import annotations

from bot.backends import errors as be
from bot.backends.flow import errors as fe

#: Flow's content-policy reasons, mapped to the filter a user can understand.
FILTER_NAMES: dict[str, str] = {
    "DANGER_FILTER": "the safety filter (dangerous content)",
    "AUDIO_FILTERED": "the audio filter",
    "PROMINENT_PEOPLE": "the prominent-people filter",
    "UNSAFE_GENERATION": "the safety filter (unsafe result)",
    "SEXUAL": "the sexual-content filter",
    "MINOR": "the child-safety filter",
    "CHILD": "the child-safety filter",
    "VIOLENCE": "the violence filter",
    "SAFETY_FILTER": "the safety filter",
    "IP_PROHIBITED": "the copyright / protected-content filter",
    "IP_INPUT": "the copyright / protected-content filter",
}


def filter_name(reason: str | None) -> str:
    """Which content filter a Flow reason code refers to."""
    if reason:
        upper = reason.upper()
        for key, name in FILTER_NAMES.items():
            if key in upper:
                return name
    return "Flow's content filter"


#: How each backend is named to users.
BACKEND_NAMES: dict[str, str] = {"flow": "Flow", "vertex": "Veo (Google Cloud)"}


def failure_text(kind: str | None, reason: str | None = None, *, backend: str = "flow") -> str:
    """Why a job failed, for the channel. `kind` is the job's stored error kind; `reason` a code, never prose."""
    name = BACKEND_NAMES.get(backend, "The video service")
    match kind:
        case "content_filter" if backend == "vertex":
            code = f" (support code {reason})" if reason and reason.isdigit() else ""
            return f"Google's safety filter removed this video; you were not charged{code}. Try rewording the prompt."
        case "blocked":
            code = f" (support code {reason})" if reason and reason.isdigit() else ""
            return f"The prompt was blocked by Google's usage guidelines{code}. It was not charged; try rewording it."
        case "content_filter":
            return (
                f"Flow blocked this video: it was stopped by {filter_name(reason)}. "
                "Try rewording the prompt; the same prompt will be blocked again."
            )
        case "timed_out":
            return f"{name} did not finish this video in time. It was not charged to your quota; try again later."
        case "transient":
            return (
                f"{name} was too busy to make this video. It was not charged to your quota; try again in a few minutes."
            )
        case "internal":
            return f"{name} hit an internal error while making this video. It was not charged to your quota; try again."
        case "unconfirmed":
            return (
                f"{name} did not confirm it received this request, so it was not sent again (that could charge twice). "
                "Check `/veo status` and try again."
            )
        case "interrupted":
            return (
                f"The bot restarted while sending this request to {name}; it was not re-sent to avoid a double charge. "
                "Please try again."
            )
        case "model_not_allowed" if backend == "vertex":
            return "This model is not available to the team's Google Cloud project right now; the admins were told."
        case "model_not_allowed":
            return "This model is not available on the team's Flow plan. Try `model: fast`."
        case "not_supported":
            return reason or f"{name} cannot make this kind of video."
        case "backend_gone":
            return (
                "The video service that took this job is no longer configured, so the bot cannot finish it. "
                "Please try again."
            )
        case "rejected":
            return f"{name} rejected this request. Try rewording the prompt."
        case "api_changed":
            return (
                f"{name} answered in a way the bot does not understand (its API may have changed). "
                "The admins were told."
            )
        case "download":
            return f"The video was made but could not be downloaded from {name}. Try again."
        case "delivery":
            return "The video was made but could not be posted here (check the bot's permissions in this channel)."
        case _:
            return f"{name} could not make this video. It was not charged to your quota; try again."


def model_missing_alert(model_id: str | None) -> str:
    """An admin alert for a Vertex AI model id that answers 404."""
    return (
        f"Vertex AI does not know the model `{model_id or '?'}` (retired, misspelt, or the project has no access). "
        "Jobs asking for it fail. Set another id with `VERTEX_MODELS`, e.g. "
        '`{"fast": "veo-3.1-fast-generate-001"}`, and restart the bot.'
    )


def backend_error_text(err: BaseException) -> str:
    """Any backend error, for an interaction reply or `python -m bot check`."""
    if isinstance(err, fe.FlowError):
        return flow_error_text(err)
    match err:
        case be.CredentialsDead():
            return "Google Cloud refused the bot's credentials." + (f" {err.hint}" if err.hint else "")
        case be.ModelUnavailable():
            return model_missing_alert(err.model_id)
        case be.RateLimited():
            return "Vertex AI asked us to slow down. Please try again in a minute."
        case be.QuotaExhausted():
            return "The Google Cloud project is out of quota for Veo right now."
        case be.NotSupported():
            return str(err)
        case be.BadResponse():
            return "Vertex AI answered in a way the bot does not understand (its API may have changed)."
        case be.Unavailable():
            return "Vertex AI is not answering right now. Please try again in a few minutes."
        case _:
            return "The video service could not complete the request."


def flow_error_text(err: BaseException) -> str:
    """A Flow client error, for an interaction reply (admin commands, checks)."""
    match err:
        case fe.CookieFileError():
            return f"The cookie file cannot be used: {err}"
        case fe.AccountMigrated():
            return MIGRATED
        case fe.CookiesExpired():
            return "Flow's session cookies have expired. An admin needs to re-export them and run `/veo-admin reload`."
        case fe.AuthExpired():
            return "Flow rejected the bot's credentials. An admin needs to run `/veo-admin reload`."
        case fe.VerificationRequired():
            return (
                "Flow is asking for a human verification. The bot never works around it: an admin needs to open Flow "
                "in a browser, complete it, then run `/veo-admin resume`."
            )
        case fe.RateLimited():
            return "Flow asked us to slow down. Please try again in a minute."
        case fe.QuotaExhausted():
            return "The team's Flow account is out of credits or hit its daily limit."
        case fe.ModelNotAllowed():
            return "That model is not available on the team's Flow plan."
        case fe.ContentRejected():
            return f"Flow rejected the prompt ({filter_name(err.filter_kind)})."
        case fe.BadResponse():
            return "Flow answered in a way the bot does not understand (its API may have changed)."
        case fe.SessionUnreachable():
            return "Flow's sign-in service is not answering right now. Please try again in a few minutes."
        case fe.UpstreamUnavailable():
            return "Flow is not answering right now. Please try again in a few minutes."
        case _:
            return "Flow could not complete the request."


MIGRATED = (
    "This Flow account moved to flow.google.com, which the bot cannot drive; use the Vertex AI backend "
    "(set GOOGLE_CLOUD_PROJECT)."
)

PAUSE_REASONS: dict[str, str] = {
    "admin": "An admin paused the queue.",
    "cookies": "Flow's session cookies have expired; an admin must re-export them (`/veo-admin reload`).",
    "verification": "Flow asked for a human verification; an admin must complete it in a browser.",
    "flow_outage": "Flow's sign-in service is not answering; the queue resumes by itself when it answers again.",
    "credits": "The team's Flow account is out of credits.",
    "api_changed": "Flow's API changed in a way the bot does not understand; an admin has been told.",
    "migrated": "The team's Flow account moved to flow.google.com, which the bot cannot use; an admin has been told.",
    "vertex_auth": "Google Cloud refused the bot's credentials; an admin has been told.",
    "budget": "This month's video budget is used up; the queue resumes next month or when an admin resumes it.",
}


def pause_text(reason: str | None) -> str:
    """Why the queue is on hold, for users."""
    return PAUSE_REASONS.get(reason or "admin", "The queue is on hold.")


ADMIN_ALERTS: dict[str, str] = {
    "cookies": (
        "Flow's session cookies have expired, so the queue is paused. Re-export the cookies for labs.google "
        "(add the `authorization` entry) and run `/veo-admin reload` with the file."
    ),
    "verification": (
        "Flow is asking for a human verification (reCAPTCHA / unusual activity), so the queue is paused. "
        "The bot never works around it: open Flow in a browser with the team account, complete any check, "
        "then run `/veo-admin resume`."
    ),
    "flow_outage": (
        "Flow's sign-in service (labs.google) has not answered for a while and the access token has expired, "
        "so the queue is paused and jobs wait. This is an outage on Flow's side, not expired cookies: nothing "
        "to re-export. The queue resumes by itself as soon as Flow answers again."
    ),
    "credits": (
        "The team's Flow account is out of credits, so the queue is paused. Run `/veo-admin resume` when topped up."
    ),
    "api_changed": (
        "The video backend answered in a shape the bot cannot read (its API may have changed). Jobs are failing; "
        "check the logs."
    ),
    "migrated": (
        "The team's Flow account moved to flow.google.com, which the bot cannot drive (every generation there needs "
        "a reCAPTCHA token minted by the page, which the bot never obtains). The queue is paused and jobs stay "
        "queued. The way on is the Vertex AI backend: set GOOGLE_CLOUD_PROJECT (see the README) and restart."
    ),
    "vertex_auth": (
        "Google Cloud refused the bot's credentials, so the queue is paused (jobs stay queued). Check the API key or "
        "the service account (role Vertex AI User), that the Vertex AI API is enabled and billing is on. The queue "
        "resumes by itself once they work."
    ),
    "budget": (
        "This month's estimated Vertex AI spend reached VEO_MONTHLY_BUDGET_USD, so the queue is paused (jobs stay "
        "queued). It resumes on the 1st (UTC), or now with `/veo-admin resume`."
    ),
}


def _videos(n: int) -> str:
    return f"{n} video" if n == 1 else f"{n} videos"


def quota_refusal_text(asked: int, *, remaining: int, limit: int, resets_at: float | None) -> str:
    """The daily quota has no room for `asked`: what was asked, what is left, when more frees up, what works."""
    when = f"the next one frees up <t:{int(resets_at)}:R>" if resets_at else "they free up within 24 hours"
    if limit <= 0:
        return "Your quota is 0 videos per 24 hours, so none can be started. Ask an admin if you need some."
    if remaining <= 0:
        return f"You have used all {limit} of your videos for the last 24 hours; {when}."
    return (
        f"You asked for {_videos(asked)} but have {remaining} left for the last 24 hours ({when}); "
        f"try count {remaining}."
    )


def active_refusal_text(asked: int, *, active: int, max_active: int) -> str:
    """The active limit refuses a request while the user's own jobs are in progress; say what would work."""
    head = f"You asked for {_videos(asked)} but already have {active} in progress"
    room = max_active - active
    if room > 0:
        return f"{head}, and at most {max_active} can be in progress at once; try count {room}."
    return (
        f"{head}, and new requests wait until fewer than {max_active} are. "
        "Wait for one to finish, or cancel one with `/veo cancel`."
    )
