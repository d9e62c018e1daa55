"""Application command validation (as strict as Discord's bulk sync) and typed option building for interactions."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes._discord_models import Json, field_error, form_error

_NAME = re.compile(r"^[-_'\w]{1,32}$")
_TYPES_WITH_CHOICES = {3, 4, 10}
MAX_COMMANDS = 100
MAX_OPTIONS = 25
MAX_CHOICES = 25
MAX_COMMAND_CHARS = 4000

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11


def _err(code: str, message: str) -> Json:
    return {"_errors": [{"code": code, "message": message}]}


def _check_name(name: Any, *, lower: bool) -> Json | None:
    if not isinstance(name, str) or not _NAME.match(name) or (lower and name != name.lower()):
        return _err("APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {name!r}")
    return None


def _check_description(desc: Any) -> Json | None:
    if not isinstance(desc, str) or not 1 <= len(desc) <= 100:
        return _err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    return None


def _char_count(node: Json) -> int:
    total = len(node.get("name", "")) + len(node.get("description", "") or "")
    for choice in node.get("choices", []) or []:
        total += len(str(choice.get("name", ""))) + len(str(choice.get("value", "")))
    for opt in node.get("options", []) or []:
        total += _char_count(opt)
    return total


def _validate_option(opt: Json, depth: int) -> Json:
    errors: Json = {}
    typ = opt.get("type")
    if not isinstance(typ, int) or not 1 <= typ <= 11:
        errors["type"] = _err("BASE_TYPE_CHOICES", f"Value must be one of (1..11): {typ!r}")
        return errors
    if (e := _check_name(opt.get("name"), lower=True)) is not None:
        errors["name"] = e
    if (e := _check_description(opt.get("description"))) is not None:
        errors["description"] = e
    choices = opt.get("choices")
    if choices:
        if typ not in _TYPES_WITH_CHOICES:
            errors["choices"] = _err("APPLICATION_COMMAND_OPTION_CHOICES_INVALID", "Choices not allowed here")
        elif len(choices) > MAX_CHOICES:
            errors["choices"] = _err("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CHOICES} or fewer in length.")
        else:
            choice_errors: Json = {}
            for i, ch in enumerate(choices):
                cname = ch.get("name")
                value = ch.get("value")
                ok_value = (
                    (typ == STRING and isinstance(value, str) and 1 <= len(value) <= 100)
                    or (typ == INTEGER and isinstance(value, int) and not isinstance(value, bool))
                    or (typ == NUMBER and isinstance(value, int | float) and not isinstance(value, bool))
                )
                if not isinstance(cname, str) or not 1 <= len(cname) <= 100:
                    choice_errors[str(i)] = {"name": _err("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100.")}
                elif not ok_value:
                    choice_errors[str(i)] = {"value": _err("BASE_TYPE_BAD_VALUE", "Invalid choice value")}
            if choice_errors:
                errors["choices"] = choice_errors
        if opt.get("autocomplete"):
            errors["autocomplete"] = _err(
                "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_WITH_CHOICES", "Autocomplete cannot be used with choices"
            )
    if ("min_value" in opt or "max_value" in opt) and typ not in (INTEGER, NUMBER):
        errors["min_value"] = _err("BASE_TYPE_BAD_VALUE", "min/max value only for integer or number")
    if ("min_length" in opt or "max_length" in opt) and typ != STRING:
        errors["min_length"] = _err("BASE_TYPE_BAD_VALUE", "min/max length only for string")
    for key in ("min_length", "max_length"):
        if key in opt and not (isinstance(opt[key], int) and 0 <= opt[key] <= 6000):
            errors[key] = _err("NUMBER_TYPE_MAX", "Must be between 0 and 6000.")
    sub = opt.get("options") or []
    if typ in (SUB_COMMAND, SUB_COMMAND_GROUP):
        if typ == SUB_COMMAND_GROUP and depth > 0:
            errors["type"] = _err("APPLICATION_COMMAND_INVALID_NESTING", "Groups cannot be nested in groups")
        allowed = {SUB_COMMAND} if typ == SUB_COMMAND_GROUP else set(range(3, 12))
        if e := _validate_options(sub, depth + 1, allowed):
            errors["options"] = e
    elif sub:
        errors["options"] = _err("APPLICATION_COMMAND_OPTION_INVALID", "Only subcommands have options")
    return errors


def _validate_options(options: list[Json], depth: int, allowed: set[int] | None = None) -> Json:
    errors: Json = {}
    if len(options) > MAX_OPTIONS:
        return _err("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_OPTIONS} or fewer in length.")
    kinds = {o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options}
    if len(kinds) > 1:
        return _err("APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Subcommands cannot be mixed with other options")
    names = [o.get("name") for o in options]
    if len(set(names)) != len(names):
        return _err("APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS", "Option names must be unique")
    seen_optional = False
    for i, opt in enumerate(options):
        oerr = _validate_option(opt, depth)
        if allowed is not None and opt.get("type") not in allowed:
            oerr["type"] = _err("APPLICATION_COMMAND_INVALID_NESTING", "Option type not allowed here")
        if opt.get("type") not in (SUB_COMMAND, SUB_COMMAND_GROUP):
            if opt.get("required"):
                if seen_optional:
                    oerr["required"] = _err(
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
        if oerr:
            errors[str(i)] = oerr
    return errors


def validate_commands(commands: Any) -> None:
    """Raise a 50035 DiscordError the way a bulk overwrite fails: one bad command fails the whole sync."""
    if not isinstance(commands, list):
        raise form_error({"_errors": [{"code": "BASE_TYPE_ARRAY", "message": "Must be an array."}]})
    if len(commands) > MAX_COMMANDS:
        raise form_error(_err("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_COMMANDS} or fewer in length."))
    errors: Json = {}
    seen: set[tuple[int, str]] = set()
    for i, cmd in enumerate(commands):
        cerr: Json = {}
        ctype = cmd.get("type", 1)
        if ctype == 1:
            if (e := _check_name(cmd.get("name"), lower=True)) is not None:
                cerr["name"] = e
        elif not isinstance(cmd.get("name"), str) or not 1 <= len(cmd["name"]) <= 32:
            # User and message context menus may use spaces and capitals ("Animate with Veo").
            cerr["name"] = _err("APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {cmd.get('name')!r}")
        key = (ctype, str(cmd.get("name")))
        if key in seen:
            cerr["name"] = _err("APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
        seen.add(key)
        if ctype == 1:
            if (e := _check_description(cmd.get("description"))) is not None:
                cerr["description"] = e
            if e := _validate_options(cmd.get("options") or [], 0):
                cerr["options"] = e
        elif cmd.get("description"):
            cerr["description"] = _err("BASE_TYPE_BAD_LENGTH", "Context menu commands have no description")
        perms = cmd.get("default_member_permissions")
        # Discord documents a string; discord.py sends an int, which Discord accepts too.
        if perms is not None and not (
            (isinstance(perms, str) and perms.isdigit()) or (isinstance(perms, int) and not isinstance(perms, bool))
        ):
            cerr["default_member_permissions"] = _err("BASE_TYPE_BAD_VALUE", "Must be a permission string")
        if not cerr and _char_count(cmd) > MAX_COMMAND_CHARS:
            cerr = _err("APPLICATION_COMMAND_TOO_LARGE", f"Command exceeds maximum size ({MAX_COMMAND_CHARS})")
        if cerr:
            errors[str(i)] = cerr
    if errors:
        raise form_error(errors)


def find_command_path(command: Json | None, subcommand: str | None) -> tuple[list[Json], list[Json] | None]:
    """Return (path of subcommand/group definitions, the leaf's option definitions or None if unknown)."""
    if command is None:
        return [], None
    if not subcommand:
        return [], command.get("options") or []
    path: list[Json] = []
    options = command.get("options") or []
    for part in subcommand.split():
        match = next(
            (o for o in options if o.get("name") == part and o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)),
            None,
        )
        if match is None:
            raise ValueError(f"command {command.get('name')!r} has no subcommand {subcommand!r}")
        path.append(match)
        options = match.get("options") or []
    return path, options


def infer_type(value: Any) -> int:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    return STRING


def coerce(name: str, typ: int, value: Any) -> Any:
    """Type a value the way Discord serialises it for that option type."""
    if typ == STRING:
        return str(value)
    if typ == INTEGER:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"option {name!r} needs an integer, got {value!r}")
        return int(value)
    if typ == NUMBER:
        return float(value)
    if typ == BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError(f"option {name!r} needs a bool, got {value!r}")
        return value
    if typ in (USER, CHANNEL, ROLE, MENTIONABLE, ATTACHMENT):
        return str(int(value))
    raise ValueError(f"unsupported option type {typ}")


def check_value(definition: Json, value: Any) -> None:
    """What the Discord client itself enforces before an interaction is ever sent."""
    name = definition["name"]
    choices = definition.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise ValueError(f"option {name!r}: {value!r} is not one of the choices")
    if "min_value" in definition and value < definition["min_value"]:
        raise ValueError(f"option {name!r}: {value!r} < min_value {definition['min_value']}")
    if "max_value" in definition and value > definition["max_value"]:
        raise ValueError(f"option {name!r}: {value!r} > max_value {definition['max_value']}")
    if "min_length" in definition and len(value) < definition["min_length"]:
        raise ValueError(f"option {name!r}: shorter than min_length")
    if "max_length" in definition and len(value) > definition["max_length"]:
        raise ValueError(f"option {name!r}: longer than max_length")


def validate_choices_response(data: Json) -> None:
    """An autocomplete result (callback type 8) with more than 25 or malformed choices is a 50035."""
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise field_error(["data", "choices"], "BASE_TYPE_REQUIRED", "This field is required")
    if len(choices) > MAX_CHOICES:
        raise field_error(["data", "choices"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CHOICES} or fewer in length.")
    for i, ch in enumerate(choices):
        cname = ch.get("name")
        if not isinstance(cname, str) or not 1 <= len(cname) <= 100:
            raise field_error(["data", "choices", i, "name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100.")
