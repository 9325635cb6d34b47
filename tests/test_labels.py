"""Open, typed labels: a labels.csv keeps every column, partly labelled rows train only where labelled, SynthFaces
offers every factor it renders, and an attribute no source labels is an error, not a silent no-op."""

import csv
import json

import pytest
import torch

from conftest import run_fsx, write_dist
from fsx.attributes import Label
from fsx.data.export import export_folder
from fsx.data.folder import FolderSource
from fsx.data.labels import LabelTableError, declared_labels, parse_label_table
from fsx.data.sampling import BatchSampler
from fsx.data.synthfaces import SynthFaces
from fsx.plugins import load_registry
from test_plugins import AGE


def _rows(header, *lines):
    return [dict(zip(header, line)) for line in lines]


def test_every_column_is_kept_and_typed_by_the_declarations(tmp_path):
    declared = declared_labels(load_registry(entry_points=False).attributes.values())
    declared["glasses"] = Label("glasses", "category")
    header = ["file", "person", "yaw", "pitch", "roll", "category", "glasses", "score", "note"]
    rows = _rows(header,
                 ["a.png", "bob", "10", "-5", "2", "3", "1", "0.5", "nice"],
                 ["b.png", "ann", "", "", "", "", "0", "", "x"],
                 ["c.png", "bob", "1.5", "2", "3", "7", "", "2", "y"])
    labels, notes = parse_label_table(tmp_path / "labels.csv", rows, declared)
    assert labels["person"].tolist() == [1, 0, 1]  # string ids numbered in sorted order: ann 0, bob 1
    assert labels["pose"].shape == (3, 3) and labels["pose"][0].tolist() == [10.0, -5.0, 2.0]
    assert torch.isnan(labels["pose"][1]).all()  # an empty cell: no pose label for that row
    assert labels["category"].tolist() == [3, -1, 7] and labels["category"].dtype == torch.long
    assert labels["glasses"].tolist() == [1, 0, -1]
    assert labels["score"][0] == 0.5 and torch.isnan(labels["score"][1])  # undeclared but numeric: a float label
    assert "note" not in labels and len(notes) == 1 and "'note'" in notes[0] and "row 2" in notes[0]
    assert "yaw" not in labels  # joined into pose


@pytest.mark.parametrize("column,value,words", [("category", "happy", "is not a class number"),
                                                 ("yaw", "left", "is not a number"),
                                                 ("valence", "1,5", "is not a number")])
def test_a_value_that_does_not_parse_names_file_row_and_column(tmp_path, column, value, words):
    declared = declared_labels(load_registry(entry_points=False).attributes.values())
    header = ["file", "yaw", "pitch", "roll", "valence", "category"]
    good = ["a.png", "1", "2", "3", "0.1", "2"]
    bad = list(good)
    bad[header.index(column)] = value
    with pytest.raises(LabelTableError) as err:
        parse_label_table(tmp_path / "labels.csv", _rows(header, good, good, bad), declared)
    assert str(err.value).startswith(f"{tmp_path / 'labels.csv'}, row 4, column {column!r}: {value!r}")
    assert words in str(err.value)


def test_partly_labelled_rows_give_the_loss_of_the_labelled_rows_only():
    from fsx.layout import Layout
    from fsx.losses import task_losses

    reg = load_registry(entry_points=False)
    pose = reg.get("pose")
    layout = Layout([("pose", 3)])
    f = torch.randn(6, 3, requires_grad=True)
    y = torch.randn(6, 3) * 20
    partial = y.clone()
    partial[[1, 4]] = float("nan")
    loss = task_losses(f, {"pose": partial}, [pose], layout)["pose"]
    keep = torch.tensor([0, 2, 3, 5])
    expected = pose.loss(f[keep], {"pose": y[keep]})
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert f.grad[[1, 4]].abs().sum() == 0 and torch.isfinite(f.grad).all()
    assert task_losses(f, {"pose": torch.full((6, 3), float("nan"))}, [pose], layout) == {}


def test_macro_batches_leave_out_rows_without_a_group_id():
    from fsx.attributes import SamplerSpec

    person = torch.tensor([0, 0, 1, 1, -1, -1, 2, 2])
    sampler = BatchSampler({"person": person}, SamplerSpec(("person",), (3,)), batch_size=6, seed=0)
    for _ in range(20):
        assert all(person[i] >= 0 for i in next(sampler))


def test_synthfaces_offers_every_rendered_factor_as_a_label():
    from fsx.data.face_params import GROUPS

    data = SynthFaces("train", image_size=32, persons=6, cache=False)
    style, ident = data.params["style"], data.params["identity"]
    assert data.labels["glasses"].tolist() == style[:, GROUPS["style"].index("glasses")].long().tolist()
    assert data.labels["hat"].dtype == torch.long and set(data.labels["hat"].unique().tolist()) <= {0, 1}
    torch.testing.assert_close(data.labels["light_x"], style[:, GROUPS["style"].index("light_x")])
    torch.testing.assert_close(data.labels["skin_r"], ident[:, GROUPS["identity"].index("skin_r")])
    for field in ("temperature", "bg_r", "noise", "blur", "hair_r", "light_strength", "eye_sep"):
        assert field in data.labels, field
    assert "noise_seed" not in data.labels


def test_export_writes_a_folder_that_reads_back_to_the_same_faces_and_labels(tmp_path):
    table = export_folder(tmp_path / "faces", 40, size=32, split="test")
    assert table.name == "labels.csv" and len(list((tmp_path / "faces" / "img").glob("*.png"))) == 40
    src = FolderSource(tmp_path / "faces", image_size=32)
    data = SynthFaces("test", image_size=32, persons=1, cache=False)
    x, y = src.get_batch(list(range(40)))
    truth = data.labels_of(list(range(40)))
    assert (x * 255 - data.images(list(range(40))) * 255).abs().max() < 0.51  # PNG: the same pixels
    torch.testing.assert_close(y["pose"], truth["pose"], atol=1e-3, rtol=0)
    for field in ("person", "clip", "category"):
        assert y[field].tolist() == truth[field].tolist(), field
    torch.testing.assert_close(y["glasses"].float(), truth["glasses"].float())
    with pytest.raises(FileExistsError, match="labels.csv exists"):
        export_folder(tmp_path / "faces", 4, size=32)


def test_unlabelled_attribute_is_an_error_naming_fields_and_sources(plugin_site, tmp_path):
    write_dist(plugin_site, "fsx-age", "0.1.0", {"fsx_age_l": AGE}, {"age": "fsx_age_l"})
    env = {"PYTHONPATH": str(plugin_site)}
    p = run_fsx("train", "--preset", "tiny", "--attributes", "pose,age", "--data", "ids=synthfaces:pose+person",
                "--out", tmp_path / "run", env_extra=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert ("attribute 'age' needs the label(s) age (scalar, years), which no data source labels "
            "(ids offers person, pose)") in p.stderr
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


@pytest.mark.slow
def test_a_plugin_attribute_trains_and_is_evaluated_on_a_folder_of_its_own_labels(plugin_site, tmp_path):
    """The user's own data: an exported folder plus an 'age' column (one age per person, some rows empty)."""
    write_dist(plugin_site, "fsx-age", "0.1.0", {"fsx_age_f": AGE}, {"age": "fsx_age_f"})
    env = {"PYTHONPATH": str(plugin_site)}
    root = tmp_path / "mine"
    export_folder(root, 192, size=32)
    rows = list(csv.DictReader(open(root / "labels.csv")))
    for i, r in enumerate(rows):
        r["age"] = "" if i % 7 == 3 else str(20 + 3 * int(r["person"]))
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    run = tmp_path / "run"
    p = run_fsx("train", "--preset", "tiny", "--attributes", "pose,id,expr,style,age", "--data", f"mine={root}",
                "--out", run, env_extra=env)
    assert p.returncode == 0, p.stderr
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/task_age" in r for r in metrics)
    labels = json.loads((run / "config.json").read_text())["labels"]
    assert labels["age"]["labelled_by"] == ["mine"]
    assert 0 < labels["age"]["samples"]["mine"] < labels["pose"]["samples"]["mine"]  # the empty cells
    p = run_fsx("eval", run / "model.safetensors", "--data", f"mine={root}", "--train-samples", "100",
                "--test-samples", "100", env_extra=env)
    assert p.returncode == 0, p.stderr
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert "persons in two disjoint halves" in m["split"] and m["table"]["age"]["unit"] == "years"
    assert "| age | MAE (years) |" in (run / "eval" / "report.md").read_text()
    assert "counterfactual" not in m  # only SynthFaces has exact counterfactuals


def test_a_split_column_is_read_and_a_bad_value_named(tmp_path):
    """The folder reads lazily, so the table alone is enough here."""
    import pytest

    from fsx.data.folder import FolderSource
    from fsx.data.labels import LabelTableError

    (tmp_path / "labels.csv").write_text("file,person,split\na.png,1,train\nb.png,2,TEST\nc.png,3,val\n")
    assert FolderSource(tmp_path).split == ["train", "test", "val"]
    (tmp_path / "labels.csv").write_text("file,person,split\na.png,1,train\nb.png,2,holdout\n")
    with pytest.raises(LabelTableError, match=r"labels.csv, row 3, column 'split': 'holdout'"):
        FolderSource(tmp_path)
