"""The training configuration from what a user types (fsx.train.options), tested without training: the CLI only
turns an OptionError into a one-line usage error."""

import pytest

from fsx.train.options import FLAGGED, OptionError, config_from_options, parse_options, parse_settings, parse_steps


def test_set_reaches_each_section_and_flags_win_over_the_preset():
    cfg = config_from_options(["pose", "identity"], "tiny", settings=["loss.rec_phi=3", "optim.betas_phi=0.5,0.9",
                                                                     "model.phi_hidden=24", "mirror_p=0.0"],
                              width=0.125, seed=5)
    assert cfg.loss.rec_phi == 3 and cfg.optim.betas_phi == (0.5, 0.9) and cfg.seed == 5
    assert cfg.model.phi_hidden == 24 and cfg.model.width == 0.125 and cfg.mirror_p == 0.0
    assert cfg.model.latent_disc_hidden == 64  # the preset's, untouched by the other model options
    assert cfg.attributes == ("pose", "identity")


@pytest.mark.parametrize("item, says", [("loss.rec_ph=3", "'loss.rec_ph' is not a training option"),
                                        ("seed=1", "has its own flag: use --seed"),
                                        ("model.width=1", "has its own flag: use --width"),
                                        ("steps={}", "has its own flag: use --steps"),
                                        ("rec_phi", "expected KEY=VALUE")])
def test_set_names_unknown_flagged_and_malformed_options(item, says):
    with pytest.raises(OptionError, match=says):
        parse_settings([item])


def test_the_demo_computes_in_bf16_where_the_device_does_it_natively_and_the_flag_wins():
    assert config_from_options(["pose"], "demo").precision == "auto"
    assert config_from_options(["pose"], "paper").precision == "fp32"  # the paper's as written
    assert config_from_options(["pose"], "demo", precision="fp32").precision == "fp32"
    assert config_from_options(["pose"], "demo", precision=None).precision == "auto"  # no flag: the preset's


def test_every_flagged_setting_exists():
    cfg = config_from_options(["pose"], "tiny")
    for key in FLAGGED:
        section, _, name = key.rpartition(".")
        assert hasattr(getattr(cfg, section) if section else cfg, name), key


def test_steps_per_stage_and_for_every_selected_stage():
    assert parse_steps("aae=2,joint=1", "tiny", "all") == {"aae": 2, "disentangle": 4, "joint": 1, "decoder": 0,
                                                           "refit": 2}
    assert parse_steps("7", "tiny", "joint")["joint"] == 7
    assert parse_steps(None, "tiny", "all") is None
    for raw, says in (("aee=2", "'aee' is not a stage"), ("aae=x", "expected a number of steps"),
                      ("aae=-1", "cannot be negative")):
        with pytest.raises(OptionError, match=says) as info:
            parse_steps(raw, "tiny", "all")
        assert info.value.flag == "--steps"


def test_attribute_options_parse_json_values_and_name_a_malformed_one():
    assert parse_options(["identity.margin=0.3", "expression.center=true", "style.mining=semihard"]) == {
        "identity": {"margin": 0.3}, "expression": {"center": True}, "style": {"mining": "semihard"}}
    with pytest.raises(OptionError, match="expected ATTRIBUTE.OPTION=VALUE"):
        parse_options(["identity-margin=0.3"])


def test_the_cli_turns_an_option_error_into_exit_2_naming_it(tmp_path):
    from click.testing import CliRunner

    from fsx.cli import main

    result = CliRunner().invoke(main, ["train", "--preset", "tiny", "--steps", "aee=2", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "'aee' is not a stage" in result.output
    assert not any(tmp_path.iterdir())  # nothing was written
