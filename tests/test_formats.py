"""Each real-data reader on a tiny fixture written in that dataset's exact on-disk format."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fairray.data.formats import hash_split, read_dataset
from fairray.data.table import read_manifest, read_table
from fairray.errors import FairrayError

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
RNG = np.random.default_rng(0)
BASE_COLUMNS = ["image_id", "source", "subset", "split", "image", "path", "height", "width"]


def write_image(path: Path, size: tuple[int, int] = (12, 10)) -> None:
    """A small noise image; the format follows the suffix (.jpg -> JPEG, .png -> PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    im = Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))
    im.save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def load(out: Path) -> pd.DataFrame:
    return read_table(out).set_index("path", drop=False)


def check_common(df: pd.DataFrame, root: Path, fmt: str, n: int) -> None:
    """Canonical columns, bytes as on disk, header sizes, and error rows kept (never dropped)."""
    assert len(df) == n
    assert list(df.columns[:len(BASE_COLUMNS)]) == BASE_COLUMNS
    assert list(df.columns[-3:]) == ["labeler", "weight", "error"]
    assert (df.source == fmt).all() and (df.subset == "real").all() and (df.weight == 1.0).all()
    assert (df.labeler == f"ground_truth:{fmt}").all()
    assert df.image_id.is_unique
    for rel, row in df.iterrows():
        file = root / rel
        if file.is_file():
            assert row.image == file.read_bytes()
            if not isinstance(row.error, str):
                assert (row.width, row.height) == Image.open(file).size
        else:
            assert row.error == f"file not found: {rel}" and row.image is None and pd.isna(row.height)


def raises(match: str):
    return pytest.raises(FairrayError, match=re.escape(match))


# ---- CelebA ---------------------------------------------------------------------------------------------

def celeba_fixture(root: Path, bad_value: str | None = None) -> dict[str, list[int]]:
    rows = {f"{i:06d}.jpg": [int(v) for v in RNG.choice([-1, 1], 40)] for i in range(1, 7)}
    rows["000001.jpg"][CELEBA_ATTRS.index("Male")] = 1
    rows["000002.jpg"][CELEBA_ATTRS.index("Male")] = -1
    for name in list(rows)[:-1]:  # 000006.jpg is listed but missing on disk
        write_image(root / "img_align_celeba" / name)
    lines = [str(len(rows)), " ".join(CELEBA_ATTRS) + " "]  # the real file has the trailing space
    lines += [f"{name} " + " ".join(f"{v:2d}" for v in vals) for name, vals in rows.items()]
    if bad_value is not None:  # line 4 is the row of 000002.jpg
        lines[3] = lines[3].replace(" 1", f" {bad_value}", 1) if " 1" in lines[3] else lines[3] + f" {bad_value}"
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{name} {p}\n" for name, p in zip(rows, [0, 0, 0, 1, 2, 0], strict=True)))
    return rows


def test_celeba(tmp_path):
    root, out = tmp_path / "celeba", tmp_path / "out"
    rows = celeba_fixture(root)
    manifest = read_dataset("celeba", root, out, {"shard_rows": 4})
    df = load(out)
    check_common(df, root, "celeba", 6)
    assert manifest["shards"] == 2 and manifest["counts"] == {"real/train": 4, "real/val": 1, "real/test": 1}
    assert df.loc["img_align_celeba/000004.jpg", "split"] == "val"
    assert df.loc["img_align_celeba/000005.jpg", "split"] == "test"
    for name, vals in rows.items():
        got = df.loc[f"img_align_celeba/{name}", CELEBA_ATTRS].to_numpy(dtype=int)
        assert got.tolist() == [(v + 1) // 2 for v in vals]
    assert df.loc["img_align_celeba/000001.jpg", "gender"] == 0  # Male=1 -> gender 0
    assert df.loc["img_align_celeba/000002.jpg", "gender"] == 1
    assert manifest["error_rows"] == 1
    assert manifest["errors"] == {"celeba:img_align_celeba/000006.jpg": "file not found: img_align_celeba/000006.jpg"}


def test_celeba_unknown_value_names_file_line_value(tmp_path):
    celeba_fixture(tmp_path, bad_value="2")
    with raises("list_attr_celeba.txt line 4: unknown") as e:
        read_dataset("celeba", tmp_path, tmp_path / "out")
    assert "'2' (allowed: -1, 1)" in str(e.value)
    (tmp_path / "list_attr_celeba.txt").unlink()
    celeba_fixture(tmp_path)
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 7\n")
    with raises("list_eval_partition.txt line 3: unknown partition '7' (allowed: 0, 1, 2)"):
        read_dataset("celeba", tmp_path, tmp_path / "out")


def test_celeba_without_partition_file_uses_hash_split(tmp_path):
    celeba_fixture(tmp_path)
    (tmp_path / "list_eval_partition.txt").unlink()
    read_dataset("celeba", tmp_path, tmp_path / "out", {"seed": 3})
    df = read_table(tmp_path / "out")
    assert df.split.tolist() == hash_split(df.path.tolist(), 0.1, 0.1, 3).tolist()


# ---- FairFace -------------------------------------------------------------------------------------------

FAIRFACE_TRAIN = [  # file, age, gender, race, service_test
    ("train/1.jpg", "20-29", "Male", "White", "True"),
    ("train/2.jpg", "more than 70", "Female", "Latino_Hispanic", "False"),
    ("train/3.jpg", "0-2", "Female", "Southeast Asian", "True"),
    ("train/4.jpg", "70+", "Male", "Middle Eastern", "False"),
]
FAIRFACE_VAL = [
    ("val/1.jpg", "3-9", "Male", "East Asian", "False"),
    ("val/2.jpg", "50-59", "Female", "Indian", "True"),
    ("val/3.jpg", "40-49", "Male", "Black", "True"),  # missing on disk
]


def fairface_fixture(root: Path, train=FAIRFACE_TRAIN, val=FAIRFACE_VAL) -> None:
    for split, rows in (("train", train), ("val", val)):
        for r in rows:
            if r[0] != "val/3.jpg":
                write_image(root / r[0], (14, 12))
        text = "file,age,gender,race,service_test\n" + "".join(",".join(r) + "\n" for r in rows)
        (root / f"fairface_label_{split}.csv").write_text(text)


def test_fairface(tmp_path):
    root, out = tmp_path / "ff", tmp_path / "out"
    fairface_fixture(root)
    read_dataset("fairface", root, out)
    df = load(out)
    check_common(df, root, "fairface", 7)
    assert df.split.tolist() == ["train"] * 4 + ["val"] * 3
    assert df.gender.tolist() == [0, 1, 1, 0, 0, 1, 0]
    assert df.race7.tolist() == [0, 2, 4, 6, 3, 5, 1]
    assert df.race4.astype("object").where(df.race4.notna(), None).tolist() == [0, None, 2, None, 2, 3, 1]
    assert str(df.race4.dtype) == "Int64"
    assert df.age9.tolist() == [3, 8, 0, 8, 1, 6, 5]
    assert df.loc["val/3.jpg", "error"] == "file not found: val/3.jpg"
    assert (df.error.notna().sum(), df.height.notna().sum()) == (1, 6)


def test_fairface_unknown_value_names_file_line_value(tmp_path):
    rows = [*FAIRFACE_TRAIN]
    rows[1] = ("train/2.jpg", "20-29", "Female", "Martian", "False")
    fairface_fixture(tmp_path, train=rows)
    with raises("fairface_label_train.csv line 3: unknown race 'Martian' (allowed: White, Black, Latino_Hispanic"):
        read_dataset("fairface", tmp_path, tmp_path / "out")
    rows = [*FAIRFACE_VAL]
    rows[0] = ("val/1.jpg", "100-109", "Male", "White", "False")
    fairface_fixture(tmp_path, val=rows)
    with raises("fairface_label_val.csv line 2: unknown age '100-109'"):
        read_dataset("fairface", tmp_path, tmp_path / "out")
    (tmp_path / "fairface_label_val.csv").write_text("file,age,race\nval/1.jpg,3-9,White\n")
    with raises("fairface_label_val.csv: missing column(s) ['gender']"):
        read_dataset("fairface", tmp_path, tmp_path / "out")


# ---- UTKFace --------------------------------------------------------------------------------------------

UTK_FILES = {  # name -> (age, gender, race5_utk, age9) or None for an error row
    "25_0_0_20170116174525125.jpg.chip.jpg": (25, 0, 0, 3),
    "3_1_2_20161219203650636.jpg.chip.jpg": (3, 1, 2, 1),
    "75_1_4_20170103182810389.jpg.chip.jpg": (75, 1, 4, 8),
    "2_0_3_20161219140525218.jpg.chip.jpg": (2, 0, 3, 0),
    "61_1_20170109142408075.jpg.chip.jpg": None,  # a real UTKFace name with the race field missing
}


def utk_fixture(root: Path, extra: dict[str, bytes] | None = None) -> None:
    for name in UTK_FILES:
        write_image(root / "UTKFace" / name, (16, 16))
    for name, blob in (extra or {}).items():
        (root / "UTKFace" / name).write_bytes(blob)


def test_utkface(tmp_path):
    root, out = tmp_path / "utk", tmp_path / "out"
    utk_fixture(root, {"30_0_1_20170117.jpg.chip.jpg": b"<html>not a jpeg</html>"})
    read_dataset("utkface", root, out, {"val_frac": 0.3, "test_frac": 0.3, "seed": 1})
    check_common(load(out), root, "utkface", 6)
    df = read_table(out)
    df.index = df.path.str.removeprefix("UTKFace/")
    for name, want in UTK_FILES.items():
        if want is None:
            assert "does not match [age]_[gender]_[race]" in df.loc[name, "error"]
            assert df.loc[name, ["age", "gender", "race5_utk", "age9"]].isna().all()
        else:
            assert tuple(df.loc[name, ["age", "gender", "race5_utk", "age9"]]) == want
            assert pd.isna(df.loc[name, "error"])
    bad = df.loc["30_0_1_20170117.jpg.chip.jpg"]
    assert bad.error.startswith("not an image") and pd.isna(bad.height) and bad.race5_utk == 1
    assert df.split.tolist() == hash_split(df.path.tolist(), 0.3, 0.3, 1).tolist()


def test_utkface_unknown_value_names_file_and_value(tmp_path):
    utk_fixture(tmp_path)
    write_image(tmp_path / "UTKFace" / "40_0_7_20170117.jpg.chip.jpg")
    with raises("UTKFace file UTKFace/40_0_7_20170117.jpg.chip.jpg: unknown race '7' (allowed: 0, 1, 2, 3, 4)"):
        read_dataset("utkface", tmp_path, tmp_path / "out")


def test_hash_split_is_deterministic_and_stable():
    keys = [f"img{i}.jpg" for i in range(4000)]
    a = hash_split(keys, 0.1, 0.2, 0)
    assert a.tolist() == hash_split(keys, 0.1, 0.2, 0).tolist()
    assert hash_split(keys[::3], 0.1, 0.2, 0).tolist() == a[::3].tolist()  # a row's split ignores the others
    shares = pd.Series(a).value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.03 and abs(shares["val"] - 0.1) < 0.03 and abs(shares["test"] - 0.2) < 0.03
    assert hash_split(keys, 0.1, 0.2, 1).tolist() != a.tolist()


# ---- AI-Face --------------------------------------------------------------------------------------------

def test_aiface(tmp_path):
    root, out = tmp_path / "aiface", tmp_path / "out"
    train = [("GANs/AttGAN/a.png", 1, 0, 5, 1), ("Real/FFHQ/b.png", 0, 3, 1, 0), ("DMs/IF/c.png", 0, 5, 10, 1)]
    test = [("Real/FFHQ/d.png", 1, 4, 6, 0), ("GANs/AttGAN/gone.png", 0, 1, 2, 1)]
    for r in train + test[:1]:
        write_image(root / r[0])
    for name, rows in (("train", train), ("test", test)):
        (root / f"{name}.csv").write_text("Image Path,Gender,Age,Skin Tone,Target\n"
                                          + "".join(",".join(map(str, r)) + "\n" for r in rows))
    manifest = read_dataset("aiface", root, out)
    df = load(out)
    check_common(df, root, "aiface", 5)
    assert manifest["counts"] == {"real/train": 3, "real/test": 2}
    df = df.loc[[r[0] for r in train + test]]  # the CSVs' order (tables come back in image_id order)
    assert df.gender.tolist() == [0, 1, 1, 0, 1]  # AI-Face 1 = male -> fairray 0
    assert df.age5.tolist() == [0, 2, 4, 3, 1]  # README codes 0, 1, 3, 4, 5 -> 0..4
    assert df.skin_tone10.tolist() == [5, 1, 10, 6, 2]
    assert df.fake.tolist() == [1, 0, 1, 0, 1]
    assert df.loc["GANs/AttGAN/gone.png", "error"] == "file not found: GANs/AttGAN/gone.png"


def test_aiface_other_spellings_one_csv_and_value_maps(tmp_path):
    rows = [("x/a.jpg", "female", "Middle-aged", "3"), ("x/b.jpg", "M", "child", ""), ("x/c.jpg", "Male", "2", "9")]
    for r in rows:
        write_image(tmp_path / r[0])
    (tmp_path / "all.csv").write_text("path,sex,age group,skin_tone\n" + "".join(",".join(r) + "\n" for r in rows))
    with raises("all.csv line 4: unknown age5 '2' (allowed: 0, 1, 3, 4, 5, child"):
        read_dataset("aiface", tmp_path, tmp_path / "o1", {"labels": "all.csv"})
    age04 = {"age5": {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, "child": 0, "middle-aged": 3}}  # YAML-style int keys
    read_dataset("aiface", tmp_path, tmp_path / "o2", {"labels": "all.csv", "value_maps": age04, "seed": 5})
    df = load(tmp_path / "o2")
    assert df.gender.tolist() == [1, 0, 0] and df.age5.tolist() == [3, 0, 2]
    assert df.skin_tone10.isna().tolist() == [False, True, False]  # an empty cell is NA, not an error
    assert df.split.tolist() == hash_split(df.path.tolist(), 0.1, 0.1, 5).tolist()
    (tmp_path / "all.csv").write_text("path,skin tone\nx/a.jpg,11\n")
    with raises("all.csv line 2: unknown skin_tone10 '11'"):
        read_dataset("aiface", tmp_path, tmp_path / "o3", {"labels": "all.csv"})


# ---- generic folder + CSV -------------------------------------------------------------------------------

def folder_fixture(root: Path, lines: list[str]) -> None:
    for name in ("a.png", "b.jpg", "c.png"):
        write_image(root / "imgs" / name)
    (root / "labels.csv").write_text("file,sex,part,smile\n" + "".join(line + "\n" for line in lines))


FOLDER_OPTS = {"columns": {"file": "path", "sex": "gender", "part": "split", "smile": "Smiling"},
               "value_maps": {"gender": {"M": 0, "F": 1}}, "images": "imgs"}


def test_folder(tmp_path):
    root, out = tmp_path / "f", tmp_path / "out"
    folder_fixture(root, ["a.png,F,train,1", "b.jpg,M,test,0", "c.png,f,val,", "missing.png,M,train,1"])
    read_dataset("folder", root, out, FOLDER_OPTS)
    df = load(out)
    check_common(df, root, "folder", 4)
    assert df.path.tolist() == ["imgs/a.png", "imgs/b.jpg", "imgs/c.png", "imgs/missing.png"]
    assert df.split.tolist() == ["train", "test", "val", "train"]
    assert df.gender.tolist() == [1, 0, 1, 0]
    assert df.Smiling.isna().tolist() == [False, False, True, False] and df.Smiling.iloc[0] == 1
    assert df.loc["imgs/missing.png", "error"] == "file not found: imgs/missing.png"
    # without a split column: the hash split
    opts = {**FOLDER_OPTS, "columns": {"file": "path", "sex": "gender"}}
    read_dataset("folder", root, tmp_path / "out2", opts)
    df = load(tmp_path / "out2")
    assert df.split.tolist() == hash_split(df.path.tolist(), 0.1, 0.1, 0).tolist()
    assert "Smiling" not in df


def test_folder_errors(tmp_path):
    folder_fixture(tmp_path, ["a.png,F,train,1", "b.jpg,X,test,0"])
    with raises("labels.csv line 3: unknown gender 'X' (allowed: M, F)"):
        read_dataset("folder", tmp_path, tmp_path / "o", FOLDER_OPTS)
    folder_fixture(tmp_path, ["a.png,F,train,1", "b.jpg,M,test,yes"])
    with raises("labels.csv line 3: unknown Smiling 'yes' (allowed: integers, or give value_maps.Smiling)"):
        read_dataset("folder", tmp_path, tmp_path / "o", FOLDER_OPTS)
    folder_fixture(tmp_path, ["a.png,F,training,1"])
    with raises("labels.csv line 2: unknown split 'training' (allowed: train, val, test)"):
        read_dataset("folder", tmp_path, tmp_path / "o", FOLDER_OPTS)
    folder_fixture(tmp_path, ["a.png,F,train,1", ",M,test,0"])
    with raises("labels.csv line 3: missing image path in column 'file'"):
        read_dataset("folder", tmp_path, tmp_path / "o", FOLDER_OPTS)
    folder_fixture(tmp_path, ["a.png,F,train,1", "a.png,M,test,0"])
    with raises("folder: image path 'imgs/a.png' is listed more than once"):
        read_dataset("folder", tmp_path, tmp_path / "o", FOLDER_OPTS)
    with raises("columns must map one CSV column to 'path'"):
        read_dataset("folder", tmp_path, tmp_path / "o", {"columns": {"sex": "gender"}})
    with raises("value_maps for ['race']"):
        read_dataset("folder", tmp_path, tmp_path / "o", {**FOLDER_OPTS, "value_maps": {"race": {"a": 1}}})


# ---- the entry point ------------------------------------------------------------------------------------

def test_read_dataset_rejects_bad_requests(tmp_path):
    with raises("unknown dataset format 'imagenet' (allowed: celeba, fairface, utkface, aiface, folder)"):
        read_dataset("imagenet", tmp_path, tmp_path / "o")
    with raises("unknown key 'shards'"):
        read_dataset("utkface", tmp_path, tmp_path / "o", {"shards": 3})
    with raises("val_frac + test_frac must be <= 1"):
        read_dataset("utkface", tmp_path, tmp_path / "o", {"val_frac": 0.6, "test_frac": 0.6})
    with raises("dataset root not found"):
        read_dataset("utkface", tmp_path / "nope", tmp_path / "o")
    with raises("label file not found"):
        read_dataset("celeba", tmp_path, tmp_path / "o")
    utk_fixture(tmp_path)
    read_dataset("utkface", tmp_path, tmp_path / "o")
    assert read_manifest(tmp_path / "o")["rows"] == 5
    with raises("already holds a dataset"):
        read_dataset("utkface", tmp_path, tmp_path / "o")


def test_read_command_and_its_errors(tmp_path):
    from typer.testing import CliRunner

    from fairray.cli import app

    root = tmp_path / "faces"
    (root / "img").mkdir(parents=True)
    Image.new("RGB", (20, 20), (10, 200, 10)).save(root / "img" / "a.png")
    (root / "labels.csv").write_text("file,sex\nimg/a.png,F\n")
    args = ["read", "folder", str(root), "--set", "columns={file: path, sex: gender}",
            "--set", "value_maps={gender: {M: 0, F: 1}}", "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert read_table(tmp_path / "o").gender.tolist() == [1]
    res = CliRunner().invoke(app, ["read", "nope", str(root)])
    assert res.exit_code == 2 and "unknown dataset format 'nope'" in res.output
