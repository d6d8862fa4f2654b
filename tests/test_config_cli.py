import pytest
import yaml
from typer.testing import CliRunner

from fairray.cli import app
from fairray.config import (
    DemoConfig,
    GanConfig,
    SynthConfig,
    load_config,
    merge_overrides,
    with_section_defaults,
)
from fairray.errors import FairrayError

runner = CliRunner()


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("n: 500\nbias: 90_10\nresolution: 64\n")
    cfg = load_config(SynthConfig, p, ["perc=0.5", "bias=gender x Black_Hair=0.4,0.1,0.1,0.4"])
    assert (cfg.n, cfg.resolution, cfg.perc) == (500, 64, 0.5)
    assert cfg.bias.joint.attributes == ["gender", "Black_Hair"]
    assert load_config(SynthConfig, p).bias.preset == "90_10"  # not YAML's 9010
    assert load_config(DemoConfig, None, ["synth.n=42", "tracking.experiment=x"]).synth.n == 42


@pytest.mark.parametrize("override, match", [
    ("nn=3", r"unknown key 'nn' \(allowed: n, val_frac"),
    ("n=abc", r"n: Input should be a valid integer.*'abc'"),
    ("resolution=48", r"resolution: Input should be 32, 64 or 128"),
    ("perc=2", r"perc: Input should be less than or equal to 1"),
    ("bias=70_30", r"cannot parse bias '70_30'"),
    ("n", r"--set expects key=value"),
])
def test_bad_keys_and_values_name_the_key(override, match):
    with pytest.raises(FairrayError, match=match):
        load_config(SynthConfig, None, [override])


def test_nested_unknown_key_lists_allowed_keys():
    with pytest.raises(FairrayError, match=r"unknown key 'synth.foo' \(allowed: n, val_frac, test_frac, perc"):
        load_config(DemoConfig, None, ["synth.foo=1"])


def test_cli_config_error_is_one_line_exit_2(tmp_path):
    res = runner.invoke(app, ["synth", "--set", "n=abc", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    text = res.output.strip()
    assert len(text.splitlines()) == 1 and text.startswith("error: config error: n:")
    assert "Traceback" not in text and not (tmp_path / "o").exists()


def test_cli_missing_config_file_and_dataset(tmp_path):
    res = runner.invoke(app, ["demo", "--config", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "config file not found" in res.output
    res = runner.invoke(app, ["info", str(tmp_path)])
    assert res.exit_code == 2 and "no Parquet dataset" in res.output


def test_dry_run_prints_resolved_config(tmp_path):
    res = runner.invoke(app, ["demo", "--dry-run", "--set", "synth.n=123", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(res.output)
    assert cfg["synth"]["n"] == 123 and cfg["synth"]["bias"]["preset"] == "90_10"
    assert not (tmp_path / "o").exists()


def test_synth_and_info_commands(tmp_path):
    out = tmp_path / "ds"
    res = runner.invoke(app, ["synth", "--set", "n=200", "--set", "bias=multi", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "biased/train" in res.output and (out / "data").is_dir()
    res = runner.invoke(app, ["info", str(out), "--split", "train", "--out", str(tmp_path / "info")])
    assert res.exit_code == 0, res.output
    assert "Black_Hair=yes & gender=female" in res.output  # the multi intersection is counted
    assert (tmp_path / "info" / "attribute_shares.png").stat().st_size > 10_000
    res = runner.invoke(app, ["info", str(out), "--intersect", "gender,nose"])
    assert res.exit_code == 2 and "unknown column(s) ['nose']" in res.output


def test_malformed_yaml_is_one_line_with_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("n: 5\nbias: [1\nx: 2\n")
    with pytest.raises(FairrayError, match=r"bad.yaml: malformed YAML at line 3, column 2: expected ',' or ']'"):
        load_config(SynthConfig, p)
    res = runner.invoke(app, ["synth", "--config", str(p)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "line 3" in res.output
    with pytest.raises(FairrayError, match=r"--set n: cannot read '\[1' as YAML"):
        load_config(SynthConfig, None, ["n=[1"])


def test_merge_overrides_lands_on_configured_section_defaults():
    merged = merge_overrides(DemoConfig, {"gan": {"kimg": 5}}, {"gan": {"width": 8}, "attrclf": {"epochs": 1}})
    assert (merged["gan"]["kimg"], merged["gan"]["width"]) == (5, 8)
    assert merged["attrclf"]["blocks"] == [1, 1, 1, 1] and merged["attrclf"]["epochs"] == 1  # the demo's attrclf
    assert merge_overrides(DemoConfig, merged, {}) == merged  # idempotent
    assert DemoConfig.model_validate(with_section_defaults(DemoConfig, {"attrclf": {"epochs": 2}})).attrclf.blocks \
        == [1, 1, 1, 1]


def test_option_copied_into_config_and_shown_by_dry_run():
    assert (GanConfig().eval_labeler, GanConfig().eval_n) == (None, 2000)
    res = runner.invoke(app, ["train-gan", "--labeler", "attrclf:/x", "--set", "eval_n=300", "--dry-run"])
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(res.output)
    assert (cfg["eval_labeler"], cfg["eval_n"]) == ("attrclf:/x", 300)
    res = runner.invoke(app, ["label", "123", "--labeler", "attrclf:x", "--dry-run"])
    assert res.exit_code == 0 and yaml.safe_load(res.output)["dataset"] == "123"  # a path, not the number 123
    res = runner.invoke(app, ["debias", "ratio", "some/dataset", "--set", "epochs=0", "--out", "never"])
    assert res.exit_code == 2 and "epochs: Input should be greater than or equal to 1" in res.output
    res = runner.invoke(app, ["demo", "--quick", "--full", "--dry-run"])
    assert res.exit_code == 2 and "exclude each other" in res.output
    res = runner.invoke(app, ["label", "d", "--labeler", "attrclf:x", "--set", "engine=threads", "--dry-run"])
    assert res.exit_code == 2 and "engine: Input should be 'auto', 'ray' or 'process'" in res.output
    res = runner.invoke(app, ["generate", "no/ckpt", "--engine", "threads", "--out", "never"])
    assert res.exit_code == 2 and "--engine must be auto, ray or process" in res.output
