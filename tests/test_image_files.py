"""Odd image files through every entry point that reads images: each is decoded to the values it holds, or
skipped and named (never a traceback, never silently wrong)."""

import csv
import io

import numpy as np
import pytest
import torch
from PIL import Image

import fsx
from conftest import run_fsx, tiny_config
from fsx.data import images as image_io
from fsx.data.images import ImageReadError, read_image
from fsx.data.real import voxceleb
from fsx.data.sources import parse_sources
from fsx.data.specs import list_images, load_images
from fsx.embeddings import encode_files

# file name -> the RGB value (0-255) every pixel must decode to
GOOD = {
    "rgb.png": (200, 100, 50),
    "grey16.png": (128, 128, 128),  # 16-bit greyscale 32896 = 128 x 257: clipping would read it as 255
    "palette.png": (10, 200, 30),
    "palette.gif": (250, 20, 120),
    "grey.png": (77, 77, 77),
    "cmyk.jpg": (255, 0, 0),  # CMYK (0, 255, 255, 0) is red
    "transparent.png": (255, 255, 255),  # fully transparent: the white background
    "half_black.png": (128, 128, 128),  # black at alpha 50% over white
    "huge.jpg": (30, 60, 90),  # 6000 x 6000, decoded in draft mode
}
BAD = {  # file name -> a word the reason must contain
    "tiny.png": "smaller than the minimum",
    "empty.png": "not a readable image",
    "truncated.jpg": "not a readable image",
    "text.png": "not a readable image",
    "folder.jpg": "a folder",
}


def make_corpus(root):
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), GOOD["rgb.png"]).save(root / "rgb.png")
    Image.fromarray(np.full((40, 48), 32896, np.uint16)).save(root / "grey16.png")
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([10, 200, 30] + [0, 0, 0] * 255)
    pal.save(root / "palette.png")
    gif = Image.new("P", (40, 40), 0)
    gif.putpalette([250, 20, 120] + [0, 0, 0] * 255)
    gif.save(root / "palette.gif")
    Image.new("L", (40, 40), 77).save(root / "grey.png")
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(root / "cmyk.jpg", quality=98)
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(root / "transparent.png")
    Image.new("RGBA", (40, 40), (0, 0, 0, 127)).save(root / "half_black.png")
    Image.new("RGB", (6000, 6000), GOOD["huge.jpg"]).save(root / "huge.jpg", quality=95)
    Image.new("RGB", (1, 1), (0, 0, 0)).save(root / "tiny.png")
    (root / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "text.png").write_text("this is not a picture\n")
    (root / "folder.jpg").mkdir()
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def assert_colour(image, rgb, tol=3):
    expected = torch.tensor(rgb, dtype=torch.float32)[:, None, None] / 255
    err = (image - expected).abs().max().item() * 255
    assert err <= tol, f"off by {err:.1f} of 255 from {rgb}"


def test_read_image_decodes_every_mode_to_its_values(corpus):
    for name, rgb in GOOD.items():
        assert_colour(read_image(corpus / name, 32), rgb, tol=6 if name.endswith(".jpg") else 1)


def test_read_image_refuses_bad_files_naming_them(corpus):
    for name, reason in BAD.items():
        with pytest.raises(ImageReadError, match=reason) as err:
            read_image(corpus / name, 32)
        assert name in str(err.value) and "\n" not in str(err.value)


def test_huge_images_are_bounded_by_the_pixel_limit(corpus, monkeypatch):
    monkeypatch.setattr(image_io, "MAX_PIXELS", 30_000_000)  # the 6000 x 6000 file is 36 MP
    with pytest.raises(ImageReadError, match="6000x6000 px is over the limit"):
        read_image(corpus / "huge.jpg", 32)


def test_box_crop_in_draft_mode_lands_on_the_box(tmp_path):
    canvas = Image.new("RGB", (4000, 3000), (0, 0, 255))
    canvas.paste(Image.new("RGB", (800, 800), (255, 0, 0)), (2000, 1000))
    canvas.save(tmp_path / "big.jpg", quality=95)
    x = read_image(tmp_path / "big.jpg", 32, box=(2100, 1100, 600, 600))  # inside the red square
    assert_colour(x, (255, 0, 0), tol=12)


def test_one_suffix_list_everywhere(corpus):
    listed = {p.split("/")[-1] for p in list_images(corpus)}
    assert listed == (set(GOOD) | set(BAD)) - {"folder.jpg"}  # the .gif is listed; a folder is not a file


def test_folder_source_keeps_good_files_and_names_bad_ones(corpus):
    with open(corpus / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "person"])
        for i, name in enumerate([*GOOD, *BAD]):
            w.writerow([name, i])
    try:
        src = parse_sources(f"mine={corpus}", image_size=32)[0]
        # read lazily: the bad files are named when a batch meets them, and left out of it
        x, y = src.get_batch(list(range(len(src))))
    finally:
        (corpus / "labels.csv").unlink()
    assert len(src) == len(GOOD) + len(BAD) and y["person"].tolist() == list(range(len(GOOD)))
    assert len(src.skipped) == len(BAD) and all(any(b in s for s in src.skipped) for b in BAD)
    for image, name in zip(x, GOOD):
        assert_colour(image, GOOD[name], tol=6 if name.endswith(".jpg") else 1)


def test_lazy_source_skips_and_names_bad_files(corpus, tmp_path):
    clip = tmp_path / "vox" / "id1" / "video" / "00001"
    clip.mkdir(parents=True)
    for name in [*GOOD, *BAD]:
        target = clip / name
        if (corpus / name).is_dir():
            target.mkdir()
        else:
            target.write_bytes((corpus / name).read_bytes())
    src = voxceleb(tmp_path / "vox", image_size=32)
    assert len(src) == len(GOOD) + len(BAD) - 1  # the folder named .jpg is not a frame
    x, _ = src.get_batch(list(range(len(src))))
    assert len(x) == len(GOOD) and len(src.skipped) == len(BAD) - 1


def test_encode_skips_and_counts_or_stops_when_strict(corpus):
    model = fsx.FaceModel(tiny_config()).eval()
    files = [str(corpus / n) for n in [*GOOD, *BAD]]
    emb, kept, skipped = encode_files(model, files)
    assert kept == [str(corpus / n) for n in GOOD] and emb["f"].shape[0] == len(GOOD)
    assert len(skipped) == len(BAD)
    with pytest.raises(ImageReadError, match="tiny.png"):
        encode_files(model, files, strict=True)
    with pytest.raises(ImageReadError, match="text.png"):
        load_images([corpus / "text.png"], 32)  # what fsx edit reads its source and target with


@pytest.mark.slow
def test_cli_encode_and_retrieve_report_skipped_files(corpus, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    fsx.save_model(fsx.FaceModel(tiny_config()), ckpt)
    out = tmp_path / "sub" / "emb.safetensors"  # its folder does not exist yet
    files = [corpus / n for n in ("rgb.png", "text.png", "grey16.png")]
    p = run_fsx("encode", ckpt, *files, "--out", out, "--no-align")  # the formats, not faces
    assert p.returncode == 0, p.stderr
    assert "skipped 1 unreadable image(s)" in p.stderr and "text.png" in p.stderr and "(1 skipped)" in p.stdout
    assert [f.split("/")[-1] for f in fsx.read_metadata(out, "fsx-embeddings")["files"]] == ["rgb.png", "grey16.png"]
    p = run_fsx("encode", ckpt, *files, "--out", out, "--strict", "--no-align")
    assert p.returncode == 2 and "text.png" in p.stderr and "Traceback" not in p.stderr
    p = run_fsx("retrieve", ckpt, "--query", corpus / "rgb.png", "--gallery", corpus, "-k", "3", "--no-align")
    assert p.returncode == 0, p.stderr
    assert f"skipped {len(BAD) - 1} unreadable image(s)" in p.stderr and "palette.gif" not in p.stderr
    p = run_fsx("retrieve", ckpt, "--query", corpus / "rgb.png", "--gallery", tmp_path / "nosuchdir", "--no-align")
    assert p.returncode == 2 and "no such folder or embeddings file" in p.stderr


def test_lfw_crops_relative_to_the_image_size_and_skips_unreadable(tmp_path):
    """LFW copies at 125 px read as the 250 px originals do (the crop is relative), and a corrupt file drops its
    pairs, counted, instead of stopping the evaluation."""
    from fsx.data import SynthFaces
    from fsx.eval.real import lfw_face, lfw_verification

    data = SynthFaces("test", image_size=128, persons=2, clips_per_person=1, frames_per_clip=3, cache=False)
    names = ["Ann", "Bob"]
    lines = ["2\t1", "Ann\t1\t2", "Ann\t1\tBob\t1", "Bob\t1\t3", "Ann\t3\tBob\t2"]
    model = fsx.FaceModel(tiny_config()).eval()
    results = {}
    for side in (250, 125):
        root = tmp_path / str(side)
        for i, img in enumerate(data.images(list(range(6)))):
            name = names[i // 3]
            path = root / "lfw" / name / f"{name}_{i % 3 + 1:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame = Image.new("RGB", (250, 250), (0, 0, 0))
            frame.paste(Image.fromarray((img.permute(1, 2, 0) * 255).byte().numpy()).resize((150, 150)), (50, 50))
            frame.resize((side, side), Image.BILINEAR).save(path, quality=95)
        (root / "pairs.txt").write_text("\n".join(lines) + "\n")
        results[side] = lfw_verification(model, root)
        assert results[side]["sizes"] == {f"{side}x{side}": 6} and results[side]["pairs"] == 4
    big, _ = lfw_face(tmp_path / "250" / "lfw" / "Ann" / "Ann_0001.jpg", 32)
    small, _ = lfw_face(tmp_path / "125" / "lfw" / "Ann" / "Ann_0001.jpg", 32)
    assert (big - small).abs().mean() < 0.03 and small.mean() > 0.2  # the same face, not a black corner
    (tmp_path / "250" / "lfw" / "Bob" / "Bob_0003.jpg").write_bytes(b"broken")
    r = lfw_verification(model, tmp_path / "250")
    assert r["pairs"] == 3 and len(r["skipped"]) == 1 and "Bob_0003.jpg" in r["skipped"][0]
