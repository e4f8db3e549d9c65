from pathlib import Path

import pytest

from noisyseg.config import RunConfig, load_config, parse_key_values
from noisyseg.errors import ConfigError
from noisyseg.methods import validate_method

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "example.yaml"


def test_example_config_lists_every_option_with_its_default():
    assert load_config(EXAMPLE) == RunConfig()
    import yaml

    written = yaml.safe_load(EXAMPLE.read_text())
    for section, field in RunConfig.model_fields.items():  # every option is in the file, not just defaulted
        assert set(written[section]) == set(field.annotation.model_fields), section


def test_overrides_merge_deeply_and_are_validated():
    cfg = load_config(EXAMPLE, {"train": {"max_steps": 7}, "method": {"name": "clcs"}})
    assert cfg.train.max_steps == 7 and cfg.train.val_every == 100 and cfg.method.name == "clcs"
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config(None, {"train": {"max_steps": 0}})
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        load_config(None, {"optim": {"lrr": 0.1}})


def test_an_unknown_top_level_section_is_refused_with_a_suggestion(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optimizer: {lr: 0.5}\n")
    with pytest.raises(ConfigError, match="unknown section 'optimizer'.*did you mean 'optim'"):
        load_config(cfg)
    cfg.write_text("benchmark: {name: x}\noptim: {lr: 0.5}\n")  # benchmark: is read by `noisyseg benchmark`
    assert load_config(cfg).optim.lr == 0.5


def test_method_params_are_validated_by_the_method():
    from noisyseg.config import MethodConfig

    cls, params = validate_method(MethodConfig(name="clcs", params={"tau": 0.9}))
    assert params.tau == 0.9
    with pytest.raises(ConfigError, match=r"method\.params\.tau"):
        validate_method(MethodConfig(name="clcs", params={"tau": 1.5}))
    with pytest.raises(ConfigError, match="did you mean 'clcs'"):
        validate_method(MethodConfig(name="clc"))


def test_key_values_parse_as_yaml():
    assert parse_key_values(["a=1", "b=[3, 7]", "c=dilate"], "--param") == {"a": 1, "b": [3, 7], "c": "dilate"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_key_values(["oops"], "--param")
