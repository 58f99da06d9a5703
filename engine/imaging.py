"""Images in and out: uint8 conversion, PNG writing, robust image loading, and contact sheets.

to_uint8(image)            [H, W, 3] (or [H, W] / [H, W, 1]) float in [0, 1] or uint8 -> np.uint8 [H, W, 3]
save_png(path, image)      writes a PNG (creates parent folders); returns the path
load_image(path)           -> np.uint8 [H, W, 3]; applies EXIF orientation, flattens alpha onto white
contact_sheet(rows, ...)   a grid of images with small gaps and optional row/column labels
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


class ImageError(ValueError):
    """An image could not be read, written or converted; the message names the file or the bad shape."""


MAX_IMAGE_PIXELS = 16384 * 16384
"""Images claiming more pixels than this are refused from their header, before any decoding (a crafted
PNG can claim 50000x50000 in a few hundred bytes)."""


def to_uint8(image) -> np.ndarray:  # -> [H, W, 3] uint8
    """An image tensor/array [H, W, 3], [H, W, 1] or [H, W] as uint8 RGB.

    Floats are taken as [0, 1] (clipped, rounded to the nearest level); uint8 is passed through;
    other integer types must already be in 0..255.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().to("cpu")
        if image.dtype in (torch.float16, torch.bfloat16):
            image = image.float()
        image = image.numpy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"expected an image of shape [H, W, 3], [H, W, 1] or [H, W]; got {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ImageError(f"integer image values must be in 0..255, got {arr.min()}..{arr.max()}")
        return arr.astype(np.uint8)
    raise ImageError(f"cannot convert an image of dtype {arr.dtype} to uint8")


def save_png(path: str | Path, image) -> Path:
    """Write `image` (anything `to_uint8` takes) as an RGB PNG; parent folders are created."""
    from PIL import Image

    path = Path(path)
    rgb = to_uint8(image)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb, mode="RGB").save(path, format="PNG")
    except OSError as e:
        raise ImageError(f"could not write PNG {path}: {e}") from None
    return path


def load_image(path: str | Path) -> np.ndarray:  # -> [H, W, 3] uint8
    """Read any image PIL can open as uint8 RGB.

    EXIF orientation is applied (photos from phones come out upright), grayscale is replicated to three
    channels, 16-bit images are scaled to 8 bits, and transparency is composited onto white.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageError(f"not a file (expected an image): {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS or w <= 0 or h <= 0:
                    raise ImageError(
                        f"image {path} claims {w}x{h} pixels, over the limit of {MAX_IMAGE_PIXELS} "
                        "(corrupt or crafted file?)"
                    )
                im.load()
                im = ImageOps.exif_transpose(im)
                return _pil_to_rgb(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"not an image PIL can read (unknown or corrupt format): {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image {path} is too large to decode safely: {e}") from None
    except MemoryError:
        raise ImageError(f"image {path} does not fit in memory") from None
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, EOFError, struct.error, ...
        raise ImageError(f"could not read image {path}: {type(e).__name__}: {e}"[:500]) from None


def _pil_to_rgb(im) -> np.ndarray:  # [H, W, 3] uint8
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        return to_uint8(arr / top)
    if im.mode == "F":
        return to_uint8(np.asarray(im, dtype=np.float64))
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode in ("RGB", "L") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------- sheets
def contact_sheet(
    rows: Sequence[Sequence],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    gap: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:  # -> [H, W, 3] uint8
    """A grid of images: `rows[r][c]` is drawn in row r, column c; None leaves a cell empty.

    Rows may have different lengths and images different sizes: each column is as wide as its widest image,
    each row as tall as its tallest, and images are centred in their cells. `row_labels` (one per row) are
    written to the left of the rows, `col_labels` (one per column) above the columns, in PIL's default font.
    """
    from PIL import Image, ImageDraw

    if len(rows) == 0 or all(len(r) == 0 for r in rows):
        raise ImageError("contact_sheet needs at least one image")
    grid = [[None if im is None else to_uint8(im) for im in row] for row in rows]
    n_cols = max(len(r) for r in grid)
    if row_labels is not None and len(row_labels) != len(grid):
        raise ImageError(f"row_labels has {len(row_labels)} entries for {len(grid)} rows")
    if col_labels is not None and len(col_labels) != n_cols:
        raise ImageError(f"col_labels has {len(col_labels)} entries for {n_cols} columns")
    col_w = [
        max((r[c].shape[1] for r in grid if c < len(r) and r[c] is not None), default=1)
        for c in range(n_cols)
    ]
    row_h = [max((im.shape[0] for im in r if im is not None), default=1) for r in grid]

    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(s: str) -> tuple[int, int]:
        left, top, right, bottom = probe.textbbox((0, 0), s)
        return right - left, bottom - top

    label_w = max((text_size(s)[0] for s in row_labels), default=0) + 2 * gap if row_labels else 0
    label_h = max((text_size(s)[1] for s in col_labels), default=0) + 2 * gap if col_labels else 0
    width = label_w + sum(col_w) + gap * (n_cols + 1)
    height = label_h + sum(row_h) + gap * (len(grid) + 1)
    sheet = np.empty((height, width, 3), dtype=np.uint8)
    sheet[:] = np.asarray(background, dtype=np.uint8)

    xs = np.cumsum([label_w + gap] + [w + gap for w in col_w])  # left edge of each column
    ys = np.cumsum([label_h + gap] + [h + gap for h in row_h])  # top edge of each row
    for r, row in enumerate(grid):
        for c, im in enumerate(row):
            if im is None:
                continue
            y0 = ys[r] + (row_h[r] - im.shape[0]) // 2
            x0 = xs[c] + (col_w[c] - im.shape[1]) // 2
            sheet[y0 : y0 + im.shape[0], x0 : x0 + im.shape[1]] = im

    if row_labels or col_labels:
        canvas = Image.fromarray(sheet)
        draw = ImageDraw.Draw(canvas)
        ink = (0, 0, 0) if sum(background) > 384 else (255, 255, 255)
        for r, s in enumerate(row_labels or []):
            draw.text((gap, int(ys[r]) + (row_h[r] - text_size(s)[1]) // 2), s, fill=ink)
        for c, s in enumerate(col_labels or []):
            draw.text((int(xs[c]) + (col_w[c] - text_size(s)[0]) // 2, gap), s, fill=ink)
        sheet = np.asarray(canvas, dtype=np.uint8).copy()
    return sheet


def grid_rows(images: Sequence, columns: int) -> list[list]:
    """Split a flat list of images into rows of `columns` (the last row may be shorter)."""
    if columns < 1:
        raise ImageError(f"columns must be >= 1, got {columns}")
    return [list(images[i : i + columns]) for i in range(0, len(images), columns)]
