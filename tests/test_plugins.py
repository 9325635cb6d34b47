"""Third-party attribute plugins found through the ``fsx`` entry-point group, and broken ones."""

import pytest

import fsx
from fsx.plugins import UnknownAttributeError, load_registry
from conftest import run_fsx, write_dist

# A plugin that SynthFaces cannot label (it renders no age): its label must come from the user's own data.
AGE = """
import attrs

from fsx.attributes import Attribute, Label, Probe
from fsx.plugins import hookimpl


@attrs.frozen
class AgeL1:
    scale: float = 0.01

    def __call__(self, features, labels, generator=None):
        return (features[:, 0] - labels["age"].to(features) * self.scale).abs().mean()


@hookimpl
def fsx_register_attributes():
    return [Attribute(name="age", dim=8, labels=(Label("age", unit="years"),), loss=AgeL1(),
                      probe=Probe("regression", "age", unit="years"))]
"""


def test_builtins_register_through_the_hook():
    reg = load_registry(entry_points=False)
    assert {n: a.dim for n, a in reg.attributes.items()} == {"pose": 3, "identity": 32, "expression": 32, "style": 32}
    assert reg.get("id").name == "identity" and reg.get("expr").name == "expression"
    assert all(a.package == "fsx" for a in reg.attributes.values())
    assert reg.problems == []


def test_third_party_plugin_is_listed_and_placed_in_the_layout(plugin_site):
    write_dist(plugin_site, "fsx-age", "0.1.0", {"fsx_age_t1": AGE}, {"age": "fsx_age_t1"})
    reg = load_registry()
    assert reg.problems == []
    age = reg.get("age")
    assert (age.dim, age.package, age.version) == (8, "fsx-age", "0.1.0")
    model = fsx.build_model("pose,id,age", registry=reg, image_size=32, width=0.125, phi_hidden=16, latent_disc_hidden=16)
    assert model.attributes == {"pose": 3, "identity": 32, "age": 8}
    assert model.layout.slices["age"] == slice(35, 43)


BROKEN = {
    "import_error": ("raise RuntimeError('boom at import')\n", "failed to load: RuntimeError: boom at import"),
    "hook_raises": (
        "from fsx.plugins import hookimpl\n@hookimpl\ndef fsx_register_attributes():\n    raise ValueError('bad hook')\n",
        "ValueError: bad hook",
    ),
    "dim_zero": (
        "from fsx.plugins import hookimpl\nfrom fsx.attributes import Attribute\n"
        "@hookimpl\ndef fsx_register_attributes():\n"
        "    return [Attribute(name='gaze', dim=0, labels=('gaze',), loss=lambda f, l, g=None: f.sum())]\n",
        "dim must be an integer >= 1",
    ),
    "duplicate": (
        "from fsx.plugins import hookimpl\nfrom fsx.attributes import Attribute\n"
        "@hookimpl\ndef fsx_register_attributes():\n"
        "    return [Attribute(name='identity2', aliases=('id',), dim=4, labels=('p',), loss=lambda f, l, g=None: f.sum())]\n",
        "name 'id' is already taken by attribute 'identity' from package fsx",
    ),
    "missing_loss": (
        "from fsx.plugins import hookimpl\nfrom fsx.attributes import Attribute\n"
        "@hookimpl\ndef fsx_register_attributes():\n"
        "    return [Attribute(name='gaze', dim=2, labels=('gaze',))]\n",
        "loss",
    ),
    "missing_sampler": (
        "from fsx.plugins import hookimpl\nfrom fsx.attributes import Attribute\n"
        "@hookimpl\ndef fsx_register_attributes():\n"
        "    return [Attribute(name='gaze', dim=2, labels=('gaze',), loss=lambda f, l, g=None: f.sum(), sampler=None)]\n",
        "sampler must be a SamplerSpec",
    ),
    "not_an_attribute": (
        "from fsx.plugins import hookimpl\n@hookimpl\ndef fsx_register_attributes():\n    return [{'name': 'x'}]\n",
        "returned dict, not fsx.attributes.Attribute",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_plugin_is_reported_and_builtins_survive(plugin_site, case):
    source, message = BROKEN[case]
    module = f"fsx_broken_{case}"
    write_dist(plugin_site, f"fsx-broken-{case.replace('_', '-')}", "9.9", {module: source}, {case: module})
    reg = load_registry()
    assert list(reg.attributes)[:4] == ["pose", "identity", "expression", "style"]
    assert len(reg.problems) == 1
    problem = str(reg.problems[0])
    assert f"plugin '{case}'" in problem and f"fsx-broken-{case.replace('_', '-')} 9.9" in problem
    assert message in problem


def test_good_plugin_survives_a_broken_neighbour(plugin_site):
    write_dist(plugin_site, "fsx-age", "0.1.0", {"fsx_age_t2": AGE}, {"age": "fsx_age_t2"})
    write_dist(plugin_site, "fsx-bad", "1.0", {"fsx_bad_t2": "raise ImportError('no')\n"}, {"bad": "fsx_bad_t2"})
    reg = load_registry()
    assert reg.get("age").dim == 8
    assert [p.plugin for p in reg.problems] == ["bad"]


def test_unknown_attribute_lists_known():
    reg = load_registry(entry_points=False)
    with pytest.raises(UnknownAttributeError, match=r"unknown attribute 'gaze'; known: pose, identity \(id\)"):
        reg.resolve("pose,gaze")


def test_a_requested_attribute_whose_plugin_failed_says_so(plugin_site):
    write_dist(plugin_site, "fsx-gaze", "2.0", {"fsx_gaze_t": "raise ImportError('needs opencv')\n"}, {"gaze": "fsx_gaze_t"})
    reg = load_registry()
    with pytest.raises(UnknownAttributeError) as err:
        reg.resolve("pose,gaze")
    assert str(err.value) == ("attribute 'gaze' is not available: plugin 'gaze' (package fsx-gaze 2.0) failed: "
                              "failed to load: ImportError: needs opencv")
    p = run_fsx("train", "--preset", "tiny", "--attributes", "pose,gaze", "--out", plugin_site / "run",
                env_extra={"PYTHONPATH": str(plugin_site)})
    assert p.returncode == 2 and "plugin 'gaze' (package fsx-gaze 2.0) failed" in p.stderr


def test_a_plugin_brings_its_own_preset_options_and_option_overrides_them(plugin_site):
    """Attribute.presets: the preset's tuning of an attribute lives with the attribute, for built-ins and plugins."""
    from fsx.plugins import get_registry
    from fsx.train import make_config

    tuned = AGE.replace('probe=Probe("regression", "age", unit="years"))',
                        'probe=Probe("regression", "age", unit="years"), presets={"demo": {"weight": 7.0}})')
    write_dist(plugin_site, "fsx-age", "0.1.0", {"fsx_age_t4": tuned}, {"age": "fsx_age_t4"})
    get_registry.cache_clear()
    try:
        assert make_config("demo", attributes=("pose", "age")).attribute_options == {"pose": {"weight": 20.0},
                                                                                   "age": {"weight": 7.0}}
        mine = make_config("demo", attributes=("pose", "age"), attribute_options={"age": {"scale": 0.02}})
        assert mine.attribute_options["age"] == {"weight": 7.0, "scale": 0.02}
        assert make_config("tiny", attributes=("pose", "age")).attribute_options == {}
        with pytest.raises(ValueError, match="presets must map a preset name"):
            fsx.attributes.Attribute(name="x", dim=1, labels=("x",), loss=lambda f, y, g=None: f.sum(),
                                     presets={"demo": 3})
    finally:
        get_registry.cache_clear()


@pytest.mark.slow
def test_a_regression_plugin_learns_its_label_by_a_clear_margin_over_the_other_sub_vectors(tmp_path):
    """The second example plugin (tests/plugin_light: light direction, a vector label, regression probe), installed
    by pip for real and trained beside pose in a short seeded run: in ``fsx eval``'s table its own sub-vector reads
    the light clearly better than chance and than the pose sub-vector and f_not_light. Measured on the current demo
    preset (SynthFaces test persons, chance 0.335, 2-core AMD EPYC): at 250 joint steps MAE 0.152 / 0.170 / 0.149
    from its own sub-vector against 0.330 / 0.292 / 0.317 from pose (seeds 0 / 1 / 2), the worst own-to-other
    ratio 0.58 against the 0.75 asserted; at 200 steps 0.67 (docs/experiments.md). Seeds stand in for other CPUs:
    so short a run follows the CPU's floating-point path. No ``decoder`` stage, no judge and no FID (the table reads
    E and Phi, which none of them touches), and no perceptual term: the measurements above ran without it."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(REPO / "tests" / "plugin_light")], check=True, capture_output=True, text=True)
    env = {"PYTHONPATH": str(site)}
    run = tmp_path / "run"
    run_fsx("train", "--attributes", "pose,light", "--image-size", "32", "--width", "0.25", "--batch-size", "32",
            "--steps", "aae=0,disentangle=0,joint=250,refit=0,decoder=0", "--judge-every", "0",
            "--set", "synth.persons=100", "--set", "loss.rec_perceptual=0", "--out", run,
            env_extra=env, check=True)
    run_fsx("eval", run / "model.safetensors", "--test-persons", "30", "--train-samples", "1500",
            "--test-samples", "1000", "--fid-samples", "0", env_extra=env, check=True)
    results = json.loads((run / "eval" / "metrics.json").read_text())["table"]["light"]["results"]
    assert set(results) == {"pose", "light", "not_light"}
    own, chance = results["light"]["value"], results["light"]["chance"]
    assert own < 0.75 * chance, results
    for other in ("pose", "not_light"):
        assert own < 0.75 * results[other]["value"], (other, results)
