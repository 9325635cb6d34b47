import struct

import pytest
import torch
from safetensors.torch import save_file

import fsx
from fsx.checkpoint import save_tensors
from conftest import tiny_config


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = fsx.FaceModel(tiny_config())
    path = tmp_path / "m.safetensors"
    fsx.save_model(model, path, data="synthfaces", preset="tiny", steps={"aae": 3})
    return model, path


def test_round_trip_every_tensor_and_metadata_field(saved):
    model, path = saved
    loaded = fsx.load(path)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert loaded.config == model.config
    meta = fsx.read_metadata(path)
    assert meta["fsx_version"] == fsx.__version__
    assert meta["config"]["image_size"] == 32 and meta["config"]["width"] == 0.125
    assert meta["config"]["encoder"] == "resnet18_encoder" and meta["config"]["generator"] == "resnet18_generator"
    assert [(a["name"], a["dim"], a["package"]) for a in meta["attributes"]] == [
        ("pose", 3, "fsx"), ("identity", 32, "fsx"), ("expression", 32, "fsx"), ("style", 32, "fsx")
    ]
    assert meta["info"] == {"data": "synthfaces", "preset": "tiny", "steps": {"aae": 3}}
    assert loaded.metadata == meta["info"]
    assert not loaded.training  # ready for inference


def test_write_is_atomic_no_temp_files_left(saved, tmp_path):
    _, path = saved
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_write_that_fails_midway_keeps_the_old_file_and_leaves_no_temp_file(saved, tmp_path):
    """A real failure inside the write (a file-size limit the kernel enforces, as a full disk would stop it): the
    error names the file, the checkpoint that was there loads as before, no temporary file is left behind."""
    import resource
    import signal

    from fsx.checkpoint import CheckpointWriteError, atomic_write_bytes

    _, path = saved
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, hard))
    try:
        with pytest.raises(CheckpointWriteError, match=f"could not write {path}.*previous file is unchanged"):
            atomic_write_bytes(path, b"x" * len(before))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]
    fsx.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(fsx.CheckpointError, match="no such checkpoint"):
        fsx.load(tmp_path / "nope.safetensors")


def test_truncated_file(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(fsx.CheckpointError, match=str(path.name) + ".*(truncated|corrupt)"):
        fsx.load(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00\x01 this is not a checkpoint" * 10)
    with pytest.raises(fsx.CheckpointError, match="not a readable safetensors"):
        fsx.load(path)


def test_corrupt_header_json(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n // 2] = ord("}")  # break the JSON header in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(fsx.CheckpointError):
        fsx.load(path)


def test_safetensors_but_not_fsx(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(fsx.CheckpointError, match="not an fsx checkpoint"):
        fsx.load(path)


def _with_attributes(tmp_path, slots):
    """A checkpoint whose metadata declares ``slots`` (what another installation would have written)."""
    cfg = tiny_config().to_dict()
    cfg["attributes"] = slots
    meta = {"format": "fsx-model", "fsx_version": fsx.__version__, "config": cfg, "attributes": slots, "info": {}}
    path = tmp_path / "x.safetensors"
    save_tensors(path, {"w": torch.zeros(1)}, meta)
    return path


def test_attribute_plugin_not_installed(tmp_path):
    path = _with_attributes(tmp_path, [{"name": "age", "dim": 8, "package": "fsx-age", "version": "0.1.0"}])
    with pytest.raises(fsx.CheckpointError, match=r"attribute 'age' \(package fsx-age 0.1.0\) is not installed"):
        fsx.load(path)


def test_attribute_dims_disagree(tmp_path):
    path = _with_attributes(tmp_path, [{"name": "identity", "dim": 16, "package": "fsx", "version": "0.0.1"}])
    with pytest.raises(fsx.CheckpointError, match="'identity' has dim 16 in the checkpoint.*declares dim 32"):
        fsx.load(path)


def test_tensors_not_matching_the_model(tmp_path):
    path = _with_attributes(tmp_path, [{"name": "pose", "dim": 3, "package": "fsx", "version": ""}])
    with pytest.raises(fsx.CheckpointError, match="tensors do not match"):
        fsx.load(path)


def test_error_is_one_line(tmp_path):
    path = _with_attributes(tmp_path, [{"name": "age", "dim": 8, "package": "fsx-age", "version": "0.1.0"}])
    with pytest.raises(fsx.CheckpointError) as info:
        fsx.load(path)
    assert "\n" not in str(info.value)


def test_no_pickle_on_the_load_path():
    """No module unpickles. The one exception is the one-time converter of facenet-pytorch's ONet state dict
    (``python -m fsx.onet``, a command a user runs once, never a load path), and it unpickles tensors only
    (``weights_only=True``, torch's restricted unpickler)."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent
    files = [py for folder in ("core", "attributes", "backbones", "plugins") for py in (root / folder).rglob("*.py")]
    assert len(files) > 20
    banned = ("import " + "pickle", "torch." + "load(")  # spelled apart so this test does not match itself
    converter = root / "core" / "onet.py"
    for py in files:
        lines = py.read_text().splitlines()
        hits = [ln for ln in lines if any(b in ln for b in banned)]
        if py == converter:
            assert hits and all("weights_only=True" in ln for ln in hits), hits
        else:
            assert not hits, py


def test_unknown_backbone_is_a_checkpoint_error(saved, tmp_path):
    model, _ = saved
    path = tmp_path / "b.safetensors"
    fsx.save_model(model, path)
    meta = fsx.read_metadata(path)
    meta["config"]["generator"] = "stylegan9000"
    save_tensors(path, model.state_dict(), meta)
    with pytest.raises(fsx.CheckpointError, match="cannot build its model: unknown backbone 'stylegan9000'"):
        fsx.load(path)


def test_metadata_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"fsx": "[1, 2]"})
    with pytest.raises(fsx.CheckpointError, match="metadata is a JSON list, not an object"):
        fsx.load(path)


def test_a_value_of_the_wrong_type_names_its_field(tmp_path):
    cfg = tiny_config().to_dict()
    cfg["image_size"] = "64"
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"w": torch.zeros(1)}, {"format": "fsx-model", "config": cfg, "attributes": [], "info": {}})
    with pytest.raises(fsx.CheckpointError, match="'image_size' must be an integer"):
        fsx.load(path)

