"""Robust image decoding: any mode to RGB, EXIF orientation applied, bad input -> a reason, never an exception."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


def decode_image(data: bytes | None, size: int | None = None, max_pixels: int = 50_000_000
                 ) -> tuple[np.ndarray | None, str | None]:
    """uint8 (H, W, 3) RGB (resized to size x size when given), or (None, reason in words)."""
    if not data:
        return None, "empty file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:  # from the header, before any pixel is decoded
                return None, f"image too large: {w}x{h} > {max_pixels} pixels"
            if w == 0 or h == 0:
                return None, f"zero-size image: {w}x{h}"
            im.load()  # force the lazy decoder: truncated files fail here
            im = ImageOps.exif_transpose(im)
            im = _to_rgb(im)
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8), None
    except UnidentifiedImageError:
        return None, "not an image: unrecognised format"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return None, f"image too large: {e}"
    except (OSError, ValueError, SyntaxError) as e:
        return None, f"unreadable image: {str(e).splitlines()[0][:200]}"


def _to_rgb(im: Image.Image) -> Image.Image:
    """Palette/alpha images are composited on white (transparent pixels read as background, not black);
    16-bit and float images are scaled to 8 bits."""
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return bg
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray((np.clip(a / hi, 0, 1) * 255 + 0.5).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def decode_batch(blobs: list[bytes | None], size: int, max_pixels: int = 50_000_000
                 ) -> tuple[np.ndarray, list[str | None]]:
    """A batch never shrinks: failed rows get a black image and their reason."""
    out = np.zeros((len(blobs), size, size, 3), np.uint8)
    errors: list[str | None] = []
    for i, b in enumerate(blobs):
        img, err = decode_image(b, size, max_pixels)
        if img is not None:
            out[i] = img
        errors.append(err)
    return out, errors
