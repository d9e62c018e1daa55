"""Every piece of wording a user sees about a failure, in one place.

Upstream text (Flow's messages, internal traces) is never shown; we map codes and types to sentences
that say what happened and what to do.
"""

from __future__ import annotations

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


def failure_text(kind: str | None, reason: str | None = None) -> str:
    """Why a job failed, for the channel. `kind` is the job's stored error kind."""
    match kind:
        case "content_filter":
            return (
                f"Flow blocked this video: it was stopped by {filter_name(reason)}. "
                "Try rewording the prompt; the same prompt will be blocked again."
            )
        case "timed_out":
            return "Flow did not finish this video in time. It was not charged to your quota; try again later."
        case "transient":
            return "Flow was too busy to make this video. It was not charged to your quota; try again in a few minutes."
        case "internal":
            return "Flow hit an internal error while making this video. It was not charged to your quota; try again."
        case "unconfirmed":
            return (
                "Flow did not confirm it received this request, so it was not sent again (that could charge twice). "
                "Check `/veo status` and try again."
            )
        case "interrupted":
            return (
                "The bot restarted while sending this request to Flow; it was not re-sent to avoid a double charge. "
                "Please try again."
            )
        case "model_not_allowed":
            return "This model is not available on the team's Flow plan. Try `model: fast`."
        case "rejected":
            return "Flow rejected this request. Try rewording the prompt."
        case "api_changed":
            return (
                "Flow answered in a way the bot does not understand (its API may have changed). The admins were told."
            )
        case "download":
            return "The video was made but could not be downloaded from Flow. Try again."
        case "delivery":
            return "The video was made but could not be posted here (check the bot's permissions in this channel)."
        case _:
            return "Flow could not make this video. It was not charged to your quota; try again."


#: Why a migrated Flow account ends the road for the Flow backend (flow-api.md §0); `check` prints it as is.
MIGRATED_SENTENCE = (
    "This Flow account moved to flow.google.com, which the bot cannot drive; "
    "use the Vertex AI backend (set GOOGLE_CLOUD_PROJECT)"
)


def flow_error_text(err: BaseException) -> str:
    """A Flow client error, for an interaction reply (admin commands, checks)."""
    match err:
        case fe.CookieFileError():
            return f"The cookie file cannot be used: {err}"
        case fe.AccountMigrated():
            return f"{MIGRATED_SENTENCE}."
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


PAUSE_REASONS: dict[str, str] = {
    "admin": "An admin paused the queue.",
    "cookies": "Flow's session cookies have expired; an admin must re-export them (`/veo-admin reload`).",
    "verification": "Flow asked for a human verification; an admin must complete it in a browser.",
    "migrated": (
        "The team's Flow account moved to flow.google.com, which the bot cannot use; "
        "an admin must switch the bot to the Vertex AI backend."
    ),
    "flow_outage": "Flow's sign-in service is not answering; the queue resumes by itself when it answers again.",
    "credits": "The team's Flow account is out of credits.",
    "api_changed": "Flow's API changed in a way the bot does not understand; an admin has been told.",
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
    "migrated": (
        "The team's Flow account moved to flow.google.com (Google moved every Flow account there in "
        "September–October 2026), so the queue is paused and jobs wait. The bot cannot drive the new site, and "
        "re-exporting cookies will not help: the way on is the Vertex AI backend. Set GOOGLE_CLOUD_PROJECT "
        "(and its credentials, see the README) and restart the bot."
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
        "Flow answered in a shape the bot cannot read (its API may have changed). Jobs are failing; check the logs."
    ),
}
