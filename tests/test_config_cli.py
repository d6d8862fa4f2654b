import pytest
import yaml
from typer.testing import CliRunner

from fairray.cli import app
from fairray.config import DemoConfig, SynthConfig, load_config
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
