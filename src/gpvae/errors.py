"""Errors raised on bad input: each names the file, the field and the fix."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input data or configuration, with a message naming file, field and fix."""

    def __init__(self, what: str, *, file: object = None, field: str | None = None,
                 fix: str | None = None) -> None:
        parts = [what]
        if file is not None:
            parts.append(f"file: {file}")
        if field is not None:
            parts.append(f"field: {field}")
        if fix is not None:
            parts.append(f"fix: {fix}")
        super().__init__(" | ".join(parts))
        self.file, self.field, self.fix = file, field, fix
