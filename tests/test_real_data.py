"""The paper's data sets, read from small fixtures written in their official on-disk formats."""

import csv

import pytest
import torch
from PIL import Image

from fsx.data.real import affectnet, celeba, lfw_pairs, vggface2, voxceleb
from fsx.data.sources import parse_sources


def _jpg(path, colour, size=(48, 56)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")


def test_celeba(tmp_path):
    for i in range(1, 7):
        _jpg(tmp_path / "img_align_celeba" / f"{i:06d}.jpg", (i * 30, 0, 0))
    (tmp_path / "identity_CelebA.txt").write_text("".join(f"{i:06d}.jpg {2880 + i % 2}\n" for i in range(1, 7)))
    (tmp_path / "list_eval_partition.txt").write_text("".join(f"{i:06d}.jpg {0 if i <= 4 else 2}\n" for i in range(1, 7)))
    src = celeba(tmp_path, image_size=32)
    assert len(src) == 4 and src.labels["person"].tolist() == [2881, 2880, 2881, 2880]
    x, y = src.get_batch([0, 3])
    assert x.shape == (2, 3, 32, 32) and abs(x[0, 0].mean().item() - 30 / 255) < 0.02
    assert len(celeba(tmp_path, split="test")) == 2


def test_affectnet_crops_boxes_and_drops_categories_8_to_10(tmp_path):
    img = tmp_path / "Manually_Annotated_Images" / "1" / "a.jpg"
    img.parent.mkdir(parents=True)
    canvas = Image.new("RGB", (100, 100), (0, 0, 255))
    canvas.paste(Image.new("RGB", (40, 40), (255, 0, 0)), (10, 20))  # the face box is red
    canvas.save(img, "JPEG", quality=95)
    rows = [("1/a.jpg", 10, 20, 40, 40, 1, 0.5, 0.2), ("1/a.jpg", 10, 20, 40, 40, 9, 0, 0), ("1/a.jpg", 10, 20, 40, 40, 6, -0.4, 0.7)]
    with open(tmp_path / "training.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal".split(","))
        for r in rows:
            w.writerow([f"Manually_Annotated_Images/{r[0]}", *r[1:5], ";".join(["1.0"] * 136), *r[5:]])
    src = affectnet(tmp_path, image_size=16)
    assert len(src) == 2 and src.labels["category"].tolist() == [1, 6]
    torch.testing.assert_close(src.labels["valence"], torch.tensor([0.5, -0.4]))
    x, _ = src.get_batch([0])
    assert x[0, 0].mean() > 0.8 and x[0, 2].mean() < 0.2  # only the red face box remains


def test_vggface2_and_voxceleb(tmp_path):
    for key in ("n000001/0001_01", "n000001/0002_01", "n000007/0001_01"):
        _jpg(tmp_path / "vgg" / "train" / f"{key}.jpg", (0, 200, 0))
    (tmp_path / "vgg" / "bb_landmark").mkdir()
    (tmp_path / "vgg" / "bb_landmark" / "loose_bb_train.csv").write_text(
        'NAME_ID,X,Y,W,H\n"n000001/0001_01",2,3,30,30\n"n000001/0002_01",0,0,20,20\n"n000007/0001_01",1,1,10,10\n')
    src = vggface2(tmp_path / "vgg", image_size=16)
    assert src.labels["person"].tolist() == [1, 1, 7]
    assert src.get_batch([2])[0].shape == (1, 3, 16, 16)
    for ident, video, clip in [("id10001", "v1", "00001"), ("id10001", "v2", "00001"), ("id10002", "v1", "00001")]:
        for frame in range(2):
            _jpg(tmp_path / "vox" / ident / video / clip / f"{frame:03d}.jpg", (9, 9, 9))
    vox = voxceleb(tmp_path / "vox", image_size=16)
    assert vox.labels["person"].tolist() == [0, 0, 0, 0, 1, 1] and vox.labels["clip"].tolist() == [0, 0, 1, 1, 2, 2]


def test_unreadable_image_is_skipped_and_counted(tmp_path):
    for i in range(1, 4):
        _jpg(tmp_path / "img_align_celeba" / f"{i:06d}.jpg", (10, 10, 10))
    (tmp_path / "img_align_celeba" / "000002.jpg").write_bytes(b"broken")
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 1\n000002.jpg 2\n000003.jpg 3\n")
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 0\n")
    src = parse_sources(f"celeba={tmp_path}", image_size=16)[0]
    x, y = src.get_batch([0, 1, 2])
    assert x.shape[0] == 2 and y["person"].tolist() == [1, 3]
    assert len(src.skipped) == 1 and "000002.jpg" in src.skipped[0]


def test_lfw_pairs_protocol(tmp_path):
    lines = ["2\t1", "Ann\t1\t2", "Ann\t1\tBob\t1", "Bob\t1\t2", "Bob\t2\tCid\t1"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairs = lfw_pairs(tmp_path)
    assert [(p[2], p[3]) for p in pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)]
    assert pairs[1][1].name == "Bob_0001.jpg" and pairs[0][1].parent.name == "Ann"


def test_missing_annotation_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="identity_CelebA.txt"):
        celeba(tmp_path)


def test_lfw_verification_table_on_a_fixture(tmp_path):
    """Table 2's protocol end to end on LFW-format files (SynthFaces renders stand in for real photos)."""
    import fsx
    from fsx.data import SynthFaces
    from fsx.eval.real import lfw_verification
    from conftest import tiny_config

    data = SynthFaces("test", image_size=128, persons=3, clips_per_person=1, frames_per_clip=4, cache=False)
    names = ["Ann", "Bob", "Cid"]
    for i, img in enumerate(data.images(list(range(12)))):
        name = names[i // 4]
        path = tmp_path / "lfw" / name / f"{name}_{i % 4 + 1:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img.permute(1, 2, 0) * 255).byte().numpy()).resize((250, 250)).save(path)
    lines = ["2\t2", "Ann\t1\t2", "Bob\t1\t3", "Ann\t1\tBob\t1", "Bob\t2\tCid\t1",
             "Cid\t1\t2", "Ann\t3\t4", "Cid\t3\tAnn\t2", "Bob\t4\tAnn\t4"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    model = fsx.FaceModel(tiny_config()).eval()
    result = lfw_verification(model, tmp_path)
    acc = result["accuracy"]
    assert set(acc) == {"pose", "identity", "expression", "style", "not_identity"}
    # The same numbers computed the plain way: crop and encode every file the pairs name, score each listed pair
    # by cosine, and run the 10-fold protocol on the folds pairs.txt gives (a wrong file, pair or fold changes them).
    from fsx.eval.real import lfw_face
    from fsx.eval.metrics import verification_fold_accuracy
    from fsx.eval.probes import cosine_scores

    pairs = lfw_pairs(tmp_path)
    files = sorted({p for a, b, _, _ in pairs for p in (a, b)})
    with torch.no_grad():
        emb = model.encode(torch.stack([lfw_face(f, model.image_size)[0] for f in files]))
    emb["not_identity"] = torch.cat([emb[n] for n in ("pose", "expression", "style")], 1)
    index = {f: k for k, f in enumerate(files)}
    i, j = torch.tensor([index[a] for a, _, _, _ in pairs]), torch.tensor([index[b] for _, b, _, _ in pairs])
    same, fold = torch.tensor([s for _, _, s, _ in pairs]), torch.tensor([k for _, _, _, k in pairs])
    for name, value in acc.items():
        assert value == pytest.approx(verification_fold_accuracy(cosine_scores(emb[name], i, j), same, fold)), name
    assert result["pairs"] == result["pairs_listed"] == 8 and not result["skipped"] and result["sizes"] == {"250x250": 11}  # the files the pairs name


def _affectnet_csv(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal".split(","))
        for rel, cat in rows:
            w.writerow([rel, 0, 0, 40, 40, ";".join(["1.0"] * 136), cat, 0.1, -0.2])


@pytest.mark.parametrize("folder", ["Manually_Annotated_Images", "Automatically_Annotated_Images"])
def test_affectnet_in_the_downloads_layout(tmp_path, folder):
    """The CSV's paths (``689/...jpg``) are relative to Manually_Annotated_Images/, as the download has them."""
    names = ["689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca.jpg", "12/a.jpg", "12/b.png"]
    for i, rel in enumerate(names):
        _jpg(tmp_path / folder / rel, (200, 40 * i, 0), size=(40, 40))
    _affectnet_csv(tmp_path / "training.csv", [(n, 1) for n in names])
    _affectnet_csv(tmp_path / "validation.csv", [(names[0], 3)])
    src = parse_sources(f"affectnet={tmp_path}", image_size=16)[0]
    assert len(src) == 3 and f"images under {tmp_path / folder}" in repr(src)
    x, y = src.get_batch([0, 1, 2])
    assert len(x) == 3 and not src.skipped and y["category"].tolist() == [1, 1, 1]
    assert abs(x[1, 1].mean().item() - 40 / 255) < 0.03  # the second file's pixels
    assert len(affectnet(tmp_path, split="val")) == 1


def test_affectnet_without_its_images_names_the_folders_tried(tmp_path):
    _affectnet_csv(tmp_path / "training.csv", [("689/x.jpg", 1)])
    with pytest.raises(FileNotFoundError, match="Manually_Annotated_Images") as err:
        affectnet(tmp_path)
    assert "689/x.jpg" in str(err.value) and "training.csv" in str(err.value)
