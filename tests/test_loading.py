"""load_split drops rows that fail to decode (and rows with `error` set) instead of crashing a worker."""

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fairray.data.decode import decode_column, decode_image
from fairray.data.loading import load_split
from fairray.data.table import ShardWriter, write_manifest
from fairray.errors import FairrayError

RNG = np.random.default_rng(0)
SIZE = 32


def encode(a: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise() -> np.ndarray:
    return RNG.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def rgba_png() -> bytes:
    a = np.zeros((SIZE, SIZE, 4), np.uint8)
    a[:, SIZE // 2:] = (255, 0, 0, 255)  # left half transparent black, right half opaque red
    return encode(a, "PNG")


def truncated_jpeg() -> bytes:
    data = encode(noise(), "JPEG", quality=95)
    return data[: len(data) // 2]


def write_dataset(root: Path, rows: list[tuple[str, bytes, str | None]], split: str = "train") -> Path:
    """A canonical table holding (image_id, image bytes, error) rows plus one attribute column."""
    n = len(rows)
    df = pd.DataFrame({
        "image_id": [r[0] for r in rows], "source": "test", "split": split, "image": [r[1] for r in rows],
        "height": SIZE, "width": SIZE, "weight": 1.0, "error": [r[2] for r in rows],
        "gender": ["female", "male"] * (n // 2) + ["female"] * (n % 2),
    })
    ShardWriter(root).write(df)
    write_manifest(root, {"rows": n, "shards": 1})
    return root


def mixed_rows() -> list[tuple[str, bytes, str | None]]:
    return [
        ("png", encode(noise(), "PNG"), None),
        ("truncated", truncated_jpeg(), None),
        ("jpeg", encode(noise(), "JPEG", quality=90), None),
        ("text", b"id,label\n1,face\n" * 20, None),
        ("flagged", encode(noise(), "PNG"), "file not found: flagged.png"),
        ("rgba", rgba_png(), None),
    ]


def test_load_split_drops_undecodable_rows_and_keeps_alignment(tmp_path, caplog):
    rows = mixed_rows()
    ds = write_dataset(tmp_path / "ds", rows)
    with caplog.at_level(logging.WARNING, logger="fairray.data"):
        images, df = load_split(ds, "train", ["gender"])
    assert list(df.image_id) == ["jpeg", "png", "rgba"] and "image" not in df.columns  # canonical: image_id order
    assert images.shape == (3, SIZE, SIZE, 3) and images.dtype == np.uint8
    by_id = {r[0]: r[1] for r in rows}
    for img, iid in zip(images, df.image_id, strict=True):  # pixels belong to the row next to them
        np.testing.assert_array_equal(img, decode_image(by_id[iid])[0])
    written = {r[0]: g for r, g in zip(rows, ["female", "male"] * 3, strict=False)}  # write_dataset's genders
    assert list(df.gender) == [written[i] for i in df.image_id]
    assert df.attrs["bad_rows"] == 2 and df.attrs["error_rows"] == 1
    reasons = dict(df.attrs["bad_examples"])
    assert set(reasons) == {"truncated", "text"}
    assert "truncated" in reasons["truncated"] and reasons["text"].startswith("not an image")
    rgba = images[list(df.image_id).index("rgba")]
    assert (rgba[:, : SIZE // 2] == 255).all() and (rgba[:, SIZE // 2:] == (255, 0, 0)).all()  # alpha on white
    assert len(caplog.records) == 1 and "2 undecodable" in caplog.text and "1 rows with error set" in caplog.text


def test_load_split_resizes_and_reports_zero_when_clean(tmp_path, caplog):
    ds = write_dataset(tmp_path / "ds", [(f"r{i}", encode(noise(), "PNG"), None) for i in range(4)])
    with caplog.at_level(logging.WARNING, logger="fairray.data"):
        images, df = load_split(ds, "train", ["gender"], size=16)
    assert images.shape == (4, 16, 16, 3) and len(df) == 4
    assert df.attrs == {"error_rows": 0, "bad_rows": 0, "bad_examples": []}
    assert not caplog.records


def test_load_split_counts_are_per_rank_and_sum_to_totals(tmp_path):
    rows = mixed_rows()
    rows[2], rows[3] = rows[3], rows[2]  # interleave so that each rank keeps a good row
    ds = write_dataset(tmp_path / "ds", rows)
    parts = [load_split(ds, "train", ["gender"], rank=r, world=2) for r in range(2)]
    assert sum(len(df) for _, df in parts) == 3
    assert sum(df.attrs["bad_rows"] for _, df in parts) == 2
    assert sum(df.attrs["error_rows"] for _, df in parts) == 1
    for images, df in parts:
        assert len(images) == len(df)


def test_load_split_all_bad_raises_one_line(tmp_path):
    ds = write_dataset(tmp_path / "bad", [("truncated", truncated_jpeg(), None), ("text", b"hello", None),
                                          ("flagged", b"", "file not found: flagged.png")])
    with pytest.raises(FairrayError) as e:
        load_split(ds, "train", ["gender"])
    msg = str(e.value)
    assert "\n" not in msg and str(ds) in msg and "first: text: not an image" in msg  # rows in image_id order


def test_load_split_only_flagged_rows_names_their_error(tmp_path):
    ds = write_dataset(tmp_path / "ds", [("flagged", b"", "file not found: flagged.png")])
    with pytest.raises(FairrayError, match="first: flagged: file not found"):
        load_split(ds, "train", ["gender"])


def test_decode_column_leaves_failed_rows_out():
    good = [encode(noise(), "PNG"), encode(noise(), "JPEG")]
    images, errors = decode_column([good[0], None, b"junk", good[1]])
    assert images.shape == (2, SIZE, SIZE, 3)
    assert errors[0] is None and errors[3] is None and errors[1] == "empty file" and errors[2].startswith("not an")
    np.testing.assert_array_equal(images[1], decode_image(good[1])[0])
    empty, errors = decode_column([b"junk"], size=8)
    assert empty.shape == (0, 8, 8, 3) and errors[0] is not None


def test_decode_column_native_sizes_must_agree():
    blobs = [encode(noise(), "PNG"), encode(np.zeros((20, 24, 3), np.uint8), "PNG")]
    with pytest.raises(FairrayError, match="row 1 is 24x20, earlier rows are 32x32"):
        decode_column(blobs)
    assert decode_column(blobs, size=8)[0].shape == (2, 8, 8, 3)
