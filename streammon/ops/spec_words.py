"""Words for a rollout spec file's mistakes: unknown fields and values outside a choice.

msgspec ignores fields a struct does not declare, so a typo (``alpah``) would silently
leave the default in force; :func:`unknown_fields` finds them, with the likely intended
name. :func:`explain_choice_error` adds the allowed values to msgspec's "Invalid enum
value" message. Pure.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

from streammon.events import MetricSpecWire, RolloutSpec


def _fields(struct: type) -> tuple[str, ...]:
    return tuple(getattr(struct, "__struct_fields__", ()))


def unknown_fields(raw: Any) -> list[str]:
    """Return ``$.alpah (did you mean alpha?)`` for every field a spec does not declare."""
    if not isinstance(raw, dict):
        return []
    out = [_unknown("$", key, _fields(RolloutSpec)) for key in raw
           if key not in _fields(RolloutSpec)]
    metrics = raw.get("metrics")
    for i, metric in enumerate(metrics if isinstance(metrics, list) else []):
        if isinstance(metric, dict):
            out += [_unknown(f"$.metrics[{i}]", key, _fields(MetricSpecWire)) for key in metric
                    if key not in _fields(MetricSpecWire)]
    return out


def _unknown(where: str, key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"{where}.{key}" + (f" (did you mean {close[0]}?)" if close else "")


def _choices(field: str) -> tuple[str, ...]:
    for struct in (MetricSpecWire, RolloutSpec):
        hint = typing.get_type_hints(struct).get(field)
        if hint is not None and typing.get_origin(hint) is typing.Literal:
            return tuple(str(a) for a in typing.get_args(hint))
    return ()


def explain_choice_error(message: str) -> str:
    """Append the allowed values to an "Invalid enum value ... at `$...field`" message."""
    match = re.search(r"Invalid enum value .* at `\$[^`]*?\.?(\w+)`", message)
    choices = _choices(match.group(1)) if match else ()
    return f"{message}; use one of: {', '.join(choices)}" if choices else message
