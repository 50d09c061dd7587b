"""Dictionary transforms for loading images into the network's layout."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform


class EnsureChannelsd(MapTransform):
    """Give channel-first images the number of channels the network expects.

    Grey images are replicated to RGB; an alpha channel is dropped; RGB given to a grey network is converted to
    luminance (ITU-R BT.601). Other combinations stop with an error naming the file.

    Args:
        keys: keys to convert.
        channels: channels the network expects (1 or 3).
        allow_missing_keys: don't fail on missing keys.
    """

    def __init__(self, keys: KeysCollection, channels: int = 3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.channels = channels

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            c = img.shape[0]
            if c == 4:  # RGBA: alpha carries no image content
                img, c = img[:3], 3
            if c == self.channels:
                pass
            elif c == 1 and self.channels == 3:
                img = img.repeat(3, *([1] * (img.ndim - 1))) if isinstance(img, torch.Tensor) else img.repeat(3, 0)
            elif c == 3 and self.channels == 1:
                weights = torch.as_tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(3, *([1] * (img.ndim - 1)))
                img = (torch.as_tensor(img).float() * weights).sum(0, keepdim=True)
            else:
                source = getattr(img, "meta", {}).get("filename_or_obj", key)
                raise ValueError(f"{source}: image has {c} channels, the network expects {self.channels}")
            d[key] = img
        return d


class CheckMinSized(MapTransform):
    """Refuse an image smaller than the training crop, naming it, instead of padding it up (a reflect pad wider than
    the image fails deep in torch; a padded crop trains on mirrored content that no real image has).

    Args:
        keys: keys to check (channel-first images).
        min_size: the spatial size every image must reach, e.g. the crop size.
        name_key: entry naming the image in the message (the datalist's ``id``).
        allow_missing_keys: don't fail on missing keys.
    """

    def __init__(
        self, keys: KeysCollection, min_size: Sequence[int], name_key: str = "id", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.min_size, self.name_key = tuple(int(s) for s in min_size), name_key

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            size = tuple(d[key].shape[1:])
            if len(size) != len(self.min_size) or any(s < m for s, m in zip(size, self.min_size)):
                name = d.get(self.name_key, getattr(d[key], "meta", {}).get("filename_or_obj", key))
                raise ValueError(
                    f"{name}: image of {' x '.join(map(str, size))} pixels is smaller than patch_size "
                    f"{list(self.min_size)}; lower --patch_size or leave the image out (--skip_bad does not drop it)."
                )
        return d
