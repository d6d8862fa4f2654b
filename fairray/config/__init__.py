"""Typed configs (pydantic v2) loaded from YAML with `--set a.b=v` overrides.

Unknown keys and wrong types are errors that name the key and what is allowed; `--dry-run` prints the
resolved config as YAML. `base` holds the machinery, the other modules the configs, grouped by subsystem.
"""

from fairray.config.base import (
    Cfg,
    apply_override,
    dump_config,
    format_validation_error,
    load_config,
    merge_overrides,
    parse_value,
    read_yaml,
    with_section_defaults,
)
from fairray.config.data import BalanceConfig, LabelConfig, SynthConfig
from fairray.config.debias import DigaConfig, GanDebiasConfig, LatentDebiasConfig, ReweightConfig
from fairray.config.runtime import RayConfig, TrackingConfig
from fairray.config.train import (
    AttrClfConfig,
    DistillConfig,
    FairClassifierConfig,
    GanConfig,
    experiment_attrclf,
)
from fairray.config.workflows import (
    DEMO_PRESETS,
    DEMO_STEPS,
    DemoConfig,
    FacegenConfig,
    TuneCampaignConfig,
)

__all__ = [
    "DEMO_PRESETS", "DEMO_STEPS", "AttrClfConfig", "BalanceConfig", "Cfg", "DemoConfig", "DigaConfig",
    "DistillConfig", "FacegenConfig", "FairClassifierConfig", "GanConfig", "GanDebiasConfig", "LabelConfig",
    "LatentDebiasConfig", "RayConfig", "ReweightConfig", "SynthConfig", "TrackingConfig", "TuneCampaignConfig",
    "apply_override", "dump_config", "experiment_attrclf", "format_validation_error", "load_config",
    "merge_overrides", "parse_value", "read_yaml", "with_section_defaults",
]

