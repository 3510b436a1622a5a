"""Folder and file names made from values that users and DNS choose (job ids, host names).

Standard library only: the training-side callback imports it, and a training process should not pay
for ftops' data stack.
"""

from __future__ import annotations

import re

_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_path_part(text: str) -> str:
    """`text` as one path component that stays inside its parent folder.

    A "/" or ".." in a job id must not write outside the inbox; the original id still travels
    inside the records, so only the folder name changes.
    """
    cleaned = _UNSAFE_PATH_CHARS.sub("_", str(text)).strip("._")
    return cleaned or "_"
