"""The record of one dataset image, shared by the layout finders (``layouts``) and the clinical finder (``clinical``).

Its own module so that neither finder has to import the other for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ImageRecord"]


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    Args:
        image: path relative to the dataset folder.
        id: image identifier (file stem or the CSV's id).
        group: lesion / patient identifier; images of one group always land in the same split.
        dx: diagnosis label when known (used to stratify splits), else "".
    """

    image: str
    id: str
    group: str
    dx: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)
