"""decode_image / decode_batch on hundreds of broken files mixed with good and odd-mode ones."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from fairray.data.decode import decode_batch, decode_image, probe_image, resize_images
from fairray.data.table import encode_npy

RNG = np.random.default_rng(0)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(w: int, h: int) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))


def png_with_header(w: int, h: int) -> bytes:
    """A well-formed PNG whose IHDR claims w x h (only a few bytes of pixel data follow)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


def odd_modes() -> dict[str, bytes]:
    """Files that must decode: every mode real datasets ship, in every container we accept."""
    grad16 = np.tile(np.linspace(0, 65535, 24).astype(np.uint16), (16, 1))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, 8:] = (255, 0, 0, 255)  # right half opaque red, left half transparent black
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.paste(1, (8, 0, 16, 16))
    la = Image.merge("LA", (Image.new("L", (16, 16), 40), Image.new("L", (16, 16), 255)))
    files = {
        "rgb.png": encode(noise(33, 21), "PNG"),
        "rgb.jpg": encode(noise(40, 30), "JPEG", quality=90),
        "cmyk.jpg": encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95),
        "gray16.png": encode(Image.fromarray(grad16), "PNG"),
        "gray.png": encode(Image.new("L", (16, 16), 128), "PNG"),
        "gray.jpg": encode(Image.new("L", (16, 16), 128), "JPEG"),
        "bilevel.png": encode(Image.new("1", (16, 16), 1), "PNG"),
        "la.png": encode(la, "PNG"),
        "rgba.png": encode(Image.fromarray(rgba, "RGBA"), "PNG"),
        "palette_transparent.png": encode(pal, "PNG", transparency=0),
        "palette.gif": encode(pal, "GIF"),
        "rgb.bmp": encode(noise(12, 9), "BMP"),
        "rgb.tiff": encode(noise(12, 9), "TIFF"),
        "cmyk.tiff": encode(Image.new("CMYK", (12, 9), (0, 0, 0, 0)), "TIFF"),
        "int32.tiff": encode(Image.fromarray(np.full((9, 12), 70000, np.int32), "I"), "TIFF"),
        "rgb.webp": encode(noise(12, 9), "WEBP"),
        "rgb.ppm": encode(noise(12, 9), "PPM"),
        "exif_rotated.jpg": exif_rotated(),
    }
    files |= {f"good{i}.png": encode(noise(8 + i, 8 + 2 * i), "PNG") for i in range(10)}
    files |= {f"good{i}.jpg": encode(noise(8 + 2 * i, 8 + i), "JPEG") for i in range(10)}
    return files


def exif_rotated() -> bytes:
    """20 wide x 10 high, red left half, blue right half, stored with EXIF orientation 6 (rotate 90 CW)."""
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :10] = (255, 0, 0)
    a[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.fromarray(a), "JPEG", quality=95, exif=exif.tobytes())


def bad_files() -> dict[str, bytes | None]:
    """>= 200 files that must each come back with a reason."""
    sources = {"png": [encode(noise(48, 40), "PNG") for _ in range(4)],
               "jpg": [encode(noise(48, 40), "JPEG", quality=90) for _ in range(4)]}
    files: dict[str, bytes | None] = {}
    for ext, blobs in sources.items():
        for i in range(80):
            b = blobs[i % len(blobs)]
            cut = int(RNG.integers(1, int(len(b) * 0.9)))
            files[f"truncated{i}.{ext}"] = b[:cut]
    files |= {f"random{i}.jpg": RNG.integers(0, 256, int(RNG.integers(1, 4000)), dtype=np.uint8).tobytes()
              for i in range(30)}
    texts = ["hello world\n", "<html><body>404 Not Found</body></html>", "file,gender\na.jpg,1\n",
             '{"error": "rate limited"}', "#!/bin/sh\necho hi\n"]
    files |= {f"text{i}.jpg": (texts[i % len(texts)] * (i + 1)).encode() for i in range(10)}
    files |= {"empty.jpg": b"", "none": None}
    files |= {"zero_w.png": png_with_header(0, 10), "zero_h.png": png_with_header(10, 0),
              "zero.png": png_with_header(0, 0)}
    files |= {"huge_30000.png": png_with_header(30000, 30000),  # PIL's own decompression-bomb error
              "huge_10000.png": png_with_header(10000, 10000),  # PIL's bomb warning, made an error
              "huge_8000.png": png_with_header(8000, 8000)}  # under PIL's limit, over max_pixels
    return files


def test_no_global_truncated_loading():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_every_good_file_decodes_and_every_bad_one_has_a_reason():
    good, bad = odd_modes(), bad_files()
    assert len(bad) >= 200
    decoded = {k: decode_image(b) for k, b in good.items()}
    assert [k for k, (img, err) in decoded.items() if err is not None] == []
    for img, _ in decoded.values():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    failed = {k: decode_image(b) for k, b in bad.items()}
    assert [k for k, (img, err) in failed.items() if img is not None or not err] == []
    assert failed["empty.jpg"][1] == failed["none"][1] == "empty file"
    assert all(failed[f"random{i}.jpg"][1].startswith("not an image") for i in range(30))
    assert all(failed[f"text{i}.jpg"][1].startswith("not an image") for i in range(10))
    assert all(failed[k][1].startswith("zero-size image") for k in ("zero_w.png", "zero_h.png", "zero.png"))
    assert all(failed[k][1].startswith("image too large") for k in bad if k.startswith("huge"))
    assert failed["huge_8000.png"][1] == "image too large: 8000x8000 > 50000000 pixels"


def test_modes_convert_to_the_right_colours():
    good = odd_modes()
    img = lambda k: decode_image(good[k])[0].astype(int)  # noqa: E731
    assert np.abs(img("cmyk.jpg")[8, 8] - [255, 0, 0]).max() < 8
    g16 = img("gray16.png")
    assert g16[0, 0].tolist() == [0, 0, 0] and g16[0, -1].tolist() == [255, 255, 255]
    assert img("int32.tiff")[0, 0].tolist() == [255, 255, 255]  # > 255: scaled as 16-bit, clipped
    assert img("gray.png")[0, 0].tolist() == [128, 128, 128]
    assert img("bilevel.png")[0, 0].tolist() == [255, 255, 255]
    for k in ("rgba.png", "palette_transparent.png"):  # transparent -> white, opaque red stays red
        assert img(k)[4, 2].tolist() == [255, 255, 255] and img(k)[4, 12].tolist() == [255, 0, 0]
    assert img("palette.gif")[4, 2].tolist() == [0, 0, 0]  # no transparency: the palette colour
    assert img("la.png")[0, 0].tolist() == [40, 40, 40]


def test_exif_orientation_is_applied():
    raw = Image.open(io.BytesIO(exif_rotated()))
    assert raw.size == (20, 10)
    img, err = decode_image(exif_rotated())
    assert err is None and img.shape == (20, 10, 3)  # 10 wide, 20 high after rotating 90 degrees
    assert probe_image(exif_rotated()) == (10, 20, None)  # the header probe agrees with the pixels
    top, bottom = img[2, 5].astype(int), img[17, 5].astype(int)
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_resize_and_max_pixels():
    blob = encode(noise(100, 60), "PNG")
    img, err = decode_image(blob, size=32)
    assert err is None and img.shape == (32, 32, 3)
    img, err = decode_image(blob, max_pixels=5000)
    assert img is None and err == "image too large: 100x60 > 5000 pixels"
    assert probe_image(blob) == (100, 60, None)
    assert probe_image(blob, max_pixels=5000)[2].startswith("image too large")
    assert probe_image(b"")[2] == "empty file"
    assert probe_image(png_with_header(0, 3))[2] == "zero-size image: 0x3"


@pytest.mark.parametrize("shape", [(32, 32), (100, 60), (7, 250), (64, 64)])
@pytest.mark.parametrize("size", [16, 64])
def test_batched_resize_gives_pils_bilinear_pixels(shape, size):
    # decode_batch resizes whole batches with torch: every labeled pixel stays within one grey level of PIL's
    # resize (the two uint8 kernels round a few pixels differently), and exactly PIL's for 32 -> 64 px
    images = [noise(*shape) for _ in range(3)]
    want = np.stack([np.asarray(im.resize((size, size), Image.BILINEAR)) for im in images]).astype(int)
    got = resize_images(np.stack([np.asarray(im) for im in images]), size)
    assert got.shape == (3, size, size, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).max() <= (0 if (shape, size) == ((32, 32), 64) else 1)
    pixels, errors = decode_batch([encode(im, "PNG") for im in images], size)
    assert errors == [None] * 3 and np.array_equal(pixels, got)
    assert np.array_equal(decode_image(encode(images[0], "PNG"), size)[0], got[0])


@pytest.mark.parametrize("size", [16, 32])
def test_decode_batch_keeps_every_row(size):
    good, bad = odd_modes(), bad_files()
    blobs = [b for pair in zip(list(good.values()) * 8, bad.values(), strict=False) for b in pair]
    pixels, errors = decode_batch(blobs, size)
    assert pixels.shape == (len(blobs), size, size, 3) and pixels.dtype == np.uint8
    assert len(errors) == len(blobs)
    failed = np.array([e is not None for e in errors])
    assert failed.sum() == len(blobs) // 2  # exactly the bad half
    assert not pixels[failed].any()  # failed rows are all-zero images
    assert pixels[~failed].reshape(int((~failed).sum()), -1).any(axis=1).sum() > 0


def npy(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, **kw)
    return buf.getvalue()


def test_raw_npy_images_decode_like_their_pngs_and_bad_ones_have_a_reason():
    images = RNG.integers(0, 256, (4, 24, 32, 3), dtype=np.uint8)
    raw = encode_npy(images)
    assert raw[0] == npy(images[0])  # NumPy's own .npy format, readable with np.load
    assert [probe_image(b) for b in raw] == [(32, 24, None)] * 4
    for size in (24, 48):
        want, _ = decode_batch([encode(Image.fromarray(im), "PNG") for im in images], size)
        got, errors = decode_batch(raw, size)
        assert errors == [None] * 4 and np.array_equal(got, want)
    bad = {"truncated": raw[0][:-1], "too long": raw[0] + b"\0", "header only": raw[0][:9],
           "float": npy(images[0].astype(np.float32)), "grey": npy(images[0, :, :, 0]),
           "fortran": npy(np.asfortranarray(images[0])), "pickle": npy(np.array([{"a": 1}]), allow_pickle=True),
           "bad header": raw[0][:10] + b"{'descr': '|u1', 'fortran_order': False, 'shape': (24, oops)}" + b" " * 6}
    failed = {k: decode_image(b) for k, b in bad.items()}
    assert [k for k, (img, err) in failed.items() if img is not None or not err] == []
    assert failed["float"][1] == "not an image: npy array must be uint8 (H, W, 3) in C order, got float32 (24, 32, 3)"
    assert failed["truncated"][1] == "corrupt or truncated image: npy body has 2303 bytes for 32x24x3"
    assert decode_image(raw[0], max_pixels=100)[1] == "image too large: 32x24 > 100 pixels"
    pixels, errors = decode_batch([*bad.values(), *raw], 24)  # a batch keeps every row, good and bad
    assert [e is None for e in errors] == [False] * len(bad) + [True] * 4
    assert np.array_equal(pixels[len(bad):], decode_batch(raw, 24)[0]) and not pixels[:len(bad)].any()
