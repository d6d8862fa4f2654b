"""Robust image decoding: any mode to RGB, EXIF orientation applied, bad input -> a reason, never an exception.

Besides the raster formats below, an image may be a NumPy `.npy` array of uint8 (H, W, 3) pixels: the raw format
fairray can write for images it renders itself (`fairray synth --set image_format=npy`), read without a codec.

Real face datasets hold a few broken files (truncated downloads, HTML error pages saved as .jpg, CMYK or
16-bit scans); one of them must cost one row its pixels, never a whole Ray task. `ImageFile.LOAD_TRUNCATED_IMAGES`
stays off on purpose: a truncated file is reported, not padded with grey.
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fairray.errors import FairrayError

# Raster formats face datasets come in. Restricting Image.open to these keeps PIL's obscure plugins from
# "recognising" random bytes and keeps their parsers off untrusted input (JPEG covers MPO camera files).
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
_CHUNK = 512  # rows decode_column decodes (at native size) before resizing them together


def _open(data: bytes) -> Image.Image:
    """Parse the header only (PIL is lazy); DecompressionBombWarning becomes an error, not log noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=FORMATS)


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0][:200]


def _reason(e: BaseException, data: bytes) -> str:
    """An exception from PIL (or a plugin) in words a dataset report can show."""
    msg = _first_line(e)
    if isinstance(e, UnidentifiedImageError):
        if data[:8] == PNG_SIGNATURE and len(data) >= 24:  # PIL rejects a 0-pixel IHDR as "not a PNG"
            w, h = struct.unpack(">II", data[16:24])
            if w == 0 or h == 0:
                return f"zero-size image: {w}x{h}"
        return f"not an image: unrecognised or unsupported format (supported: {', '.join(FORMATS)})"
    if isinstance(e, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return f"image too large: {msg}"
    return f"corrupt or truncated image: {type(e).__name__}: {msg}"


def _check_size(w: int, h: int, max_pixels: int) -> str | None:
    if w <= 0 or h <= 0:
        return f"zero-size image: {w}x{h}"
    if w * h > max_pixels:
        return f"image too large: {w}x{h} > {max_pixels} pixels"
    return None


def probe_image(data: bytes | None, max_pixels: int | None = None) -> tuple[int | None, int | None, str | None]:
    """(width, height, None) from the header alone, no pixel decoded; or (None, None, reason).

    Readers use it to fill height/width cheaply; the size is as decode_image returns it (EXIF rotation
    applied). A truncated body is only found by decode_image.
    """
    if not data:
        return None, None, "empty file"
    if data.startswith(NPY_MAGIC):
        shape, _, err = _npy_header(data, max_pixels)
        return (None, None, err) if err else (shape[1], shape[0], None)
    try:
        im = _open(data)
        w, h = im.size
    except Exception as e:  # any parser failure is a bad row, never a crash
        return None, None, _reason(e, data)
    try:
        if im.getexif().get(0x0112) in (5, 6, 7, 8):  # transposed or rotated by 90 degrees
            w, h = h, w
    except Exception:  # a corrupt EXIF block: decode_image ignores it too
        pass
    err = _check_size(w, h, max_pixels if max_pixels is not None else w * h)
    return (None, None, err) if err else (w, h, None)


def decode_image(data: bytes | None, size: int | None = None, max_pixels: int = 50_000_000
                 ) -> tuple[np.ndarray | None, str | None]:
    """uint8 (H, W, 3) RGB (resized to size x size by `resize_images` when given), or (None, reason in words).

    The size limit is checked from the header before any pixel is decoded; `.load()` forces PIL's lazy
    decoder so a truncated file fails here and not later in a worker.
    """
    img, err = _decode_native(data, max_pixels)
    if img is None or size is None or img.shape[:2] == (size, size):
        return img, err
    return resize_images(img[None], size)[0], None


def _decode_native(data: bytes | None, max_pixels: int) -> tuple[np.ndarray | None, str | None]:
    if not data:
        return None, "empty file"
    if data.startswith(NPY_MAGIC):
        shape, offset, err = _npy_header(data, max_pixels)
        return (None, err) if err else (np.frombuffer(data, np.uint8, offset=offset).reshape(shape), None)
    try:
        im = _open(data)
        if err := _check_size(*im.size, max_pixels):
            return None, err
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
        # An RGB image without metadata (fairray's own PNGs) has no orientation or mode to fix: skipping the two
        # no-op copies makes decoding ~1.3x faster at 32 px.
        if im.mode != "RGB" or im.info:
            im = _to_rgb(_orient(im))
        return np.asarray(im, dtype=np.uint8), None
    except Exception as e:  # any parser failure is a bad row, never a crash
        return None, _reason(e, data)


def _npy_header(data: bytes, max_pixels: int | None) -> tuple[tuple[int, ...], int, str | None]:
    """(shape, offset of the pixels, None) of an .npy image, or ((), 0, reason): uint8 (H, W, 3) in C order, body
    exactly as long as the header says. NumPy's own header parser reads it (no pickle is ever loaded), once per
    distinct header: a dataset of one size parses one."""
    if data[6:8] == b"\x01\x00" and len(data) >= 10:
        offset = 10 + int.from_bytes(data[8:10], "little")
    elif data[6:8] == b"\x02\x00" and len(data) >= 12:
        offset = 12 + int.from_bytes(data[8:12], "little")
    else:
        return (), 0, "corrupt or truncated image: npy header: unsupported version or truncated"
    shape, err = _npy_shape(data[:offset], max_pixels)
    if err is None and len(data) - offset != int(np.prod(shape)):
        h, w = shape[:2]
        return (), 0, f"corrupt or truncated image: npy body has {len(data) - offset} bytes for {w}x{h}x3"
    return (shape, offset, None) if err is None else ((), 0, err)


@functools.lru_cache(maxsize=64)
def _npy_shape(header: bytes, max_pixels: int | None) -> tuple[tuple[int, ...], str | None]:
    f = io.BytesIO(header)
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except Exception as e:  # any parser failure is a bad row, never a crash
        return (), f"corrupt or truncated image: npy header: {_first_line(e)}"
    if dtype != np.uint8 or len(shape) != 3 or shape[2] != 3 or fortran:
        return (), (f"not an image: npy array must be uint8 (H, W, 3) in C order, got {dtype} {tuple(shape)}"
                    f"{' in Fortran order' if fortran else ''}")
    h, w = shape[0], shape[1]
    if err := _check_size(w, h, max_pixels if max_pixels is not None else w * h):
        return (), err
    return tuple(shape), None


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, size, size, 3) with torch's antialiased uint8 bilinear kernel: PIL's
    `resize(..., BILINEAR)` pixels within one grey level (exactly for 32 -> 64 px; tests/test_decode.py), on a
    whole batch at once (~20x faster than PIL image by image at 32 px)."""
    import torch
    import torch.nn.functional as F

    images = np.ascontiguousarray(images)
    x = torch.from_numpy(images if images.flags.writeable else images.copy()).permute(0, 3, 1, 2)
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.permute(0, 2, 3, 1).contiguous().numpy()


def _orient(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a corrupt EXIF block leaves the pixels as stored instead of losing them."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB.

    Alpha (RGBA, LA, PA and palettes with a transparent index) is composited on white, so transparent
    pixels read as a plain background rather than black (what dropping the alpha channel would show for
    most cut-out faces). 16-bit and 32-bit integer/float images are scaled to 8 bits; CMYK, YCbCr, L and
    1-bit go through PIL's own conversion.
    """
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        return Image.fromarray((np.clip(a / hi, 0, 1) * 255 + 0.5).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def decode_batch(blobs: list[bytes | None], size: int, max_pixels: int = 50_000_000
                 ) -> tuple[np.ndarray, list[str | None]]:
    """uint8 (N, size, size, 3) + one error per row; a batch never shrinks: failed rows are all-zero images.

    Images are decoded at their own size, then resized together per input size (one batched kernel call for a
    dataset of one size, as fairray's renders are)."""
    decoded = [_decode_native(b, max_pixels) for b in blobs]
    out = np.zeros((len(blobs), size, size, 3), np.uint8)
    rows_by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, (img, _) in enumerate(decoded):
        if img is not None:
            rows_by_shape.setdefault(img.shape, []).append(i)
    for shape, rows in rows_by_shape.items():
        stack = np.stack([decoded[i][0] for i in rows])
        out[rows] = stack if shape[:2] == (size, size) else resize_images(stack, size)
    return out, [err for _, err in decoded]


def decode_column(blobs: Iterable[bytes | None], size: int | None = None, max_pixels: int = 50_000_000
                  ) -> tuple[np.ndarray, list[str | None]]:
    """uint8 (N_ok, H, W, 3) of the rows that decoded, in input order, + one error (None if fine) per input row.

    For training: unlike decode_batch, a failed row is left out rather than zero-filled, since a black
    image would be learnt as a face. size=None keeps native sizes, which must then all agree (FairrayError
    otherwise); `np.flatnonzero([e is None for e in errors])` maps output rows back to input rows.
    """
    blobs = list(blobs)
    out: np.ndarray | None = None
    errors: list[str | None] = []
    k = 0
    for start in range(0, len(blobs), _CHUNK):  # chunks: native-size photos of a whole column would not fit in RAM
        chunk = blobs[start:start + _CHUNK]
        if size is not None:
            pixels, errs = decode_batch(chunk, size, max_pixels)
            images = list(pixels[[e is None for e in errs]])
        else:
            decoded = [_decode_native(b, max_pixels) for b in chunk]
            images, errs = [img for img, _ in decoded if img is not None], [err for _, err in decoded]
        ok_rows = [start + j for j, e in enumerate(errs) if e is None]
        errors.extend(errs)
        for row, img in zip(ok_rows, images, strict=True):
            if out is None:  # preallocated once: stacking a list would hold every image twice at the peak
                out = np.empty((len(blobs), *img.shape), np.uint8)
            elif img.shape != out.shape[1:]:
                h, w = img.shape[:2]
                raise FairrayError(f"images differ in size: row {row} is {w}x{h}, earlier rows are "
                                   f"{out.shape[2]}x{out.shape[1]}; set a training image size to resize them")
            out[k] = img
            k += 1
    if out is None:
        return np.zeros((0, size or 0, size or 0, 3), np.uint8), errors
    return out[:k], errors
