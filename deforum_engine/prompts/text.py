"""Deforum's prompt text conventions, shared by the plan and the importers."""

NEGATIVE_MARKER = "--neg"


def split_negative(text: str) -> tuple[str, str]:
    """Split a Deforum prompt at `--neg` into (prompt, negative prompt), both stripped.

    Several `--neg` parts (as Parseq's prompt overlaps can produce) are joined with commas.
    """
    positive, *negatives = text.split(NEGATIVE_MARKER)
    return positive.strip(), ", ".join(part.strip() for part in negatives if part.strip())
