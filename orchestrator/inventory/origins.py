"""Where Ansible read a value or met an error: file[:line[:col]], from ansible-core's origin tags."""

from __future__ import annotations

from typing import Any


def _origin_tag(value: Any) -> Any:
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # pragma: no cover - other ansible-core layouts
        return None
    return value if isinstance(value, Origin) else Origin.get_tag(value) if value is not None else None


def value_origin(value: Any) -> str | None:
    """file:line where Ansible read a value, when it knows (ansible-core tags values with their origin)."""
    tag = _origin_tag(value)
    if tag is None or not tag.path:
        return None
    return f"{tag.path}:{tag.line_num}" if tag.line_num else str(tag.path)


def error_origin(exc: BaseException) -> str | None:
    """file:line:col of an Ansible error, from the object it names, along the chain of causes (Ansible
    re-raises a vars file's YAML error inside its handler: the located one is the context)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tag = _origin_tag(getattr(exc, "obj", None))
        if tag is not None and tag.path:
            parts = [str(tag.path)]
            if tag.line_num:
                parts.append(str(tag.line_num))
                if tag.col_num:
                    parts.append(str(tag.col_num))
            return ":".join(parts)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def first_line(exc: BaseException) -> str:
    """Ansible's own wording of an error, first line only (its message already summarises causes)."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
