"""User messages with attachments, message context menu commands and modals, for the fake Discord.

    msg = fd.post_user_message("look", attachments=[("cat.png", png, "image/png")], user_id=uid)
    i = await fd.send_message_command("Animate with Veo", msg.id, user_id=uid)
    modal = fd.modal_of(i)                     # the callback-9 modal, checked against Discord's limits
    s = await fd.submit_modal(i, {"prompt": "it walks", "aspect": "portrait"})

A modal submit mirrors the modal the bot sent: text inputs come back in their rows or labels, selects (inside a
label, type 18) come back with `values`; a value a modal could not produce raises ValueError, as Discord's client
would never send it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from tests.fakes._discord_models import (
    Interaction,
    Json,
    PostedMessage,
    StoredFile,
    guess_content_type,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

MESSAGE_COMMAND = 3
USER_COMMAND = 2
# Discord's limits on modals (interaction callback type 9).
MODAL_TITLE_MAX = 45
MODAL_COMPONENTS_MAX = 5
TEXT_LABEL_MAX = 45
TEXT_VALUE_MAX = 4000
SELECT_OPTIONS_MAX = 25
TEXT_INPUT, STRING_SELECT, LABEL, ACTION_ROW, TEXT_DISPLAY = 4, 3, 18, 1, 10

Attachment = tuple[str, bytes, str]  # filename, data, content type ("" to guess from the name)


class CreativeMixin:
    """Attachments on user messages, context menus and modals; state lives on the FakeDiscord instance."""

    # ------------------------------------------------------------------ attachments
    def host_file(
        self: FakeDiscord, filename: str, data: bytes, content_type: str = "", *, channel_id: int
    ) -> StoredFile:
        """Store a file on the fake CDN (`GET /attachments/{channel}/{id}/{filename}` serves it)."""
        fid = self.snowflakes.next()
        url = f"{self.base_url}/attachments/{channel_id}/{fid}/{filename}"
        stored = StoredFile(fid, filename, data, content_type or guess_content_type(filename), url)
        self.files[fid] = stored
        return stored

    def forget_file(self: FakeDiscord, file_id: int) -> None:
        """The CDN stops serving a file (expired link, deleted message): downloads get a 404."""
        self.files.pop(file_id, None)

    def post_user_message(
        self: FakeDiscord,
        content: str = "",
        *,
        attachments: Sequence[Attachment] = (),
        user_id: int | None = None,
        channel_id: int | None = None,
    ) -> PostedMessage:
        """A message written by a person (not the bot) in a guild channel, with files on the fake CDN."""
        uid = user_id if user_id is not None else self.default_user_id
        if uid not in self.users:
            self.add_user(uid)
        cid = channel_id if channel_id is not None else self.channel_id
        channel = self.channels[cid]
        files = [self.host_file(name, data, ctype, channel_id=cid) for name, data, ctype in attachments]
        payload: Json = {"content": content}
        msg = PostedMessage(
            id=self.snowflakes.next(),
            channel_id=cid,
            author_id=uid,
            content=content,
            embeds=[],
            components=[],
            allowed_mentions=None,
            nonce=None,
            enforce_nonce=False,
            attachments=[(f.filename, f.data) for f in files],
            flags=0,
            payload=payload,
            created_at=self.clock(),
            kind="user",
            guild_id=channel.guild_id,
            files=files,
        )
        self.all_messages[msg.id] = msg
        channel.last_message_id = msg.id
        self._dispatch_message_event("MESSAGE_CREATE", msg, self._message_payload(msg))
        self._notify()
        return msg

    # ------------------------------------------------------------------ context menus
    def _find_context_command(self: FakeDiscord, name: str, ctype: int) -> tuple[Json, bool]:
        for scope, in_guild in ((str(self.guild_id), True), ("global", False)):
            for cmd in self.commands.get(scope, []):
                if cmd.get("name") == name and cmd.get("type", 1) == ctype:
                    return cmd, in_guild
        raise ValueError(f"no context menu command {name!r} of type {ctype} was synced; Discord would not offer it")

    async def send_message_command(
        self: FakeDiscord,
        name: str,
        message_id: int,
        *,
        user_id: int | None = None,
        roles: Iterable[int] = (),
        permissions: str | None = None,
    ) -> Interaction:
        """Right-click a message → Apps → `name`: an APPLICATION_COMMAND with data.type 3 and the resolved message."""
        msg = self.all_messages.get(message_id)
        if msg is None or msg.deleted or msg.ephemeral:
            raise ValueError(f"no visible message {message_id} to open a context menu on")
        _, in_guild = self._find_context_command(name, MESSAGE_COMMAND)
        key = ("global" if not in_guild else str(self.guild_id), MESSAGE_COMMAND, name)
        data: Json = {
            "id": str(self._command_ids.setdefault(key, self.snowflakes.next())),
            "name": name,
            "type": MESSAGE_COMMAND,
            "target_id": str(msg.id),
            "resolved": {"messages": {str(msg.id): self._message_payload(msg)}},
        }
        if in_guild:
            data["guild_id"] = str(self.guild_id)
        return self._interaction(2, data, user_id, roles, permissions, msg.channel_id, True, "en-US")

    # ------------------------------------------------------------------ modals
    def modal_of(self: FakeDiscord, interaction: Interaction) -> Json:
        """The modal the bot opened in answer to `interaction`, checked against Discord's limits."""
        callback = interaction.callback
        if callback is None or callback.get("type") != 9:
            raise ValueError(f"interaction {interaction.id} was not answered with a modal: {callback!r}")
        modal = callback.get("data") or {}
        check_modal(modal)
        return modal

    async def submit_modal(
        self: FakeDiscord,
        interaction: Interaction,
        values: Mapping[str, str | Sequence[str]],
        *,
        user_id: int | None = None,
        roles: Iterable[int] = (),
        permissions: str | None = None,
    ) -> Interaction:
        """Fill in and submit the modal opened by `interaction` (MODAL_SUBMIT, type 5), as its user by default.

        Text inputs not in `values` keep their prefilled value; selects take a list (or one string).
        """
        modal = self.modal_of(interaction)
        unknown = set(values) - set(_inputs(modal["components"]))
        if unknown:
            raise ValueError(f"the modal has no input(s) {sorted(unknown)}")
        components = [_submitted(c, values) for c in modal["components"]]
        data: Json = {"custom_id": modal["custom_id"], "components": components}
        extra: Json | None = None
        source = interaction.payload.get("message")
        if interaction.type == 3 and source is not None:
            # A modal opened from a button carries the button's message, like Discord does.
            fresh = self.all_messages.get(int(source["id"]))
            extra = {"message": self._message_payload(fresh) if fresh is not None else source}
        uid = user_id if user_id is not None else interaction.user_id
        return self._interaction(
            5, data, uid, roles, permissions, interaction.channel_id, interaction.guild_id is not None, "en-US", extra
        )


def _inputs(components: Iterable[Json]) -> dict[str, Json]:
    found: dict[str, Json] = {}
    for comp in components:
        if comp.get("type") == ACTION_ROW:
            found.update(_inputs(comp.get("components") or []))
        elif comp.get("type") == LABEL:
            found.update(_inputs([comp["component"]]))
        elif comp.get("type") in (TEXT_INPUT, STRING_SELECT):
            found[comp["custom_id"]] = comp
    return found


def _submitted(comp: Json, values: Mapping[str, str | Sequence[str]]) -> Json:
    """The MODAL_SUBMIT shape of one modal component, with the user's values filled in."""
    typ = comp.get("type")
    if typ == ACTION_ROW:
        return {"type": ACTION_ROW, "components": [_submitted(c, values) for c in comp.get("components") or []]}
    if typ == LABEL:
        return {"type": LABEL, "component": _submitted(comp["component"], values)}
    if typ == TEXT_INPUT:
        cid = comp["custom_id"]
        raw = values.get(cid, comp.get("value") or "")
        if not isinstance(raw, str):
            raise ValueError(f"text input {cid!r} takes a string")
        if comp.get("required", True) and not raw:
            raise ValueError(f"text input {cid!r} is required; Discord's client would not submit it empty")
        if raw and not comp.get("min_length", 0) <= len(raw) <= comp.get("max_length", TEXT_VALUE_MAX):
            raise ValueError(f"text input {cid!r}: {len(raw)} characters is outside its length limits")
        return {"type": TEXT_INPUT, "custom_id": cid, "value": raw}
    if typ == STRING_SELECT:
        cid = comp["custom_id"]
        picked = values.get(cid)
        if picked is None:
            chosen = [o["value"] for o in comp.get("options") or [] if o.get("default")]
        else:
            chosen = [picked] if isinstance(picked, str) else list(picked)
        allowed = {o["value"] for o in comp.get("options") or []}
        if any(v not in allowed for v in chosen):
            raise ValueError(f"select {cid!r}: {chosen} is not among its options")
        low, high = comp.get("min_values", 1), comp.get("max_values", 1)
        if comp.get("required", True) and not low <= len(chosen) <= high:
            raise ValueError(f"select {cid!r} needs {low}..{high} values, got {len(chosen)}")
        return {"type": STRING_SELECT, "custom_id": cid, "values": chosen}
    return dict(comp)


def check_modal(modal: Json) -> None:
    """What Discord answers 50035 for when a bot opens a modal (the fake's callback checks only presence)."""
    title = modal.get("title") or ""
    if not 1 <= len(title) <= MODAL_TITLE_MAX:
        raise ValueError(f"modal title must be 1..{MODAL_TITLE_MAX} characters: {title!r}")
    custom_id = str(modal.get("custom_id") or "")
    if not 1 <= len(custom_id) <= 100:
        raise ValueError("modal custom_id must be 1..100 characters")
    components = modal.get("components") or []
    if not 1 <= len(components) <= MODAL_COMPONENTS_MAX:
        raise ValueError(f"a modal has 1..{MODAL_COMPONENTS_MAX} top-level components, got {len(components)}")
    ids = list(_inputs(components))
    if len(set(ids)) != len(ids):
        raise ValueError("custom_ids in a modal must be unique")
    for comp in components:
        if comp.get("type") == LABEL and not 1 <= len(comp.get("label") or "") <= TEXT_LABEL_MAX:
            raise ValueError(f"label must be 1..{TEXT_LABEL_MAX} characters")
    for cid, item in _inputs(components).items():
        if not 1 <= len(cid) <= 100:
            raise ValueError("input custom_id must be 1..100 characters")
        if item["type"] == TEXT_INPUT:
            if item.get("style") not in (1, 2):
                raise ValueError(f"text input {cid!r} style must be 1 or 2")
            if len(item.get("value") or "") > item.get("max_length", TEXT_VALUE_MAX):
                raise ValueError(f"text input {cid!r}: prefilled value longer than its max_length")
            if item.get("max_length", TEXT_VALUE_MAX) > TEXT_VALUE_MAX:
                raise ValueError(f"text input {cid!r}: max_length over {TEXT_VALUE_MAX}")
        elif not 1 <= len(item.get("options") or []) <= SELECT_OPTIONS_MAX:
            raise ValueError(f"select {cid!r} needs 1..{SELECT_OPTIONS_MAX} options")
