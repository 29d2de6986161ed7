"""Labelled frames in any folder layout: images found by a glob, each mask by a pattern.

Datasets nest and name their files their own way: Endoscapes ``images/X.jpg`` + ``masks/X.png``;
CholecSeg8k ``videoNN/videoNN_MMMMM/frame_K_endo.png`` + ``..._endo_watershed_mask.png``;
EndoVis ``instrument_dataset_N/left_frames/frameK.png`` + ``.../ground_truth/.../frameK.png``;
or ``img_NN_raw.png`` + ``img_NN_class.png``. The mask pattern is a path relative to the data
folder with the image's ``{dir}`` (its folder, relative), ``{stem}`` and ``{name}``; a field may
swap text: ``{stem:_raw=_class}``.

    pairs = image_mask_pairs(root, "**/*_endo.png", "{dir}/{stem}_watershed_mask.png")
"""
from __future__ import annotations

import string
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_IMAGE_GLOB = "images/*"
DEFAULT_MASK_PATTERN = "masks/{stem}.png"


class _SwapFormatter(string.Formatter):
    """``{field:old=new}``: the field with ``old`` replaced by ``new``."""

    def format_field(self, value, format_spec: str):
        if "=" in format_spec:
            old, new = format_spec.split("=", 1)
            return str(value).replace(old, new)
        return super().format_field(value, format_spec)


def mask_path_for(root: Path, image: Path, mask_pattern: str) -> Path:
    """Where ``image``'s mask is, by ``mask_pattern``."""
    relative_dir = image.parent.relative_to(root).as_posix()
    try:
        relative = _SwapFormatter().format(mask_pattern, dir=relative_dir, stem=image.stem, name=image.name)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"mask pattern {mask_pattern!r} is not usable ({error}): "
                         "use {dir}, {stem}, {name} and {stem:old=new}") from None
    return (root / relative).resolve()


class MissingMasks(ValueError):
    """Images without their mask: the message lists them all in one line; ``pairs`` are the others."""

    def __init__(self, missing: list[Path], pairs: list[tuple[Path, Path]], mask_pattern: str):
        shown = ", ".join(p.name for p in missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        super().__init__(f"{len(missing)} of {len(missing) + len(pairs)} images have no mask (--mask-pattern "
                         f"{mask_pattern!r}): {shown}")
        self.missing, self.pairs = missing, pairs


def image_mask_pairs(root: str | Path, image_glob: str = DEFAULT_IMAGE_GLOB,
                     mask_pattern: str = DEFAULT_MASK_PATTERN) -> list[tuple[Path, Path]]:
    """(image, mask) of every image under ``root`` matching ``image_glob``, sorted; no image at all is a
    :class:`ValueError` naming what was looked for, images without a mask a :class:`MissingMasks`."""
    root = Path(root)
    images = sorted(p for p in root.glob(image_glob) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"no images match {image_glob!r} in {root}")
    pairs, missing = [], []
    for image in images:
        mask = mask_path_for(root, image, mask_pattern)
        if mask == image.resolve():
            raise ValueError(f"mask pattern {mask_pattern!r} gives the image itself for {image}: narrow --image-glob")
        if mask.is_file():
            pairs.append((image, mask))
        else:
            missing.append(image)
    if missing:
        raise MissingMasks(missing, pairs, mask_pattern)
    return pairs


def sample_name(root: Path, image: Path, image_glob: str) -> str:
    """A flat, unique name for ``image``: its path below the glob's fixed folders, ``/`` as ``__``."""
    fixed = []
    for part in Path(image_glob).parts[:-1]:
        if any(c in part for c in "*?["):
            break
        fixed.append(part)
    return image.relative_to(Path(root, *fixed)).with_suffix("").as_posix().replace("/", "__")
