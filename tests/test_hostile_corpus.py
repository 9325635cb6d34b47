"""The hostile corpus: every entry point of the ``fsx`` command line against each class of bad input it can
meet, as a real subprocess. Each case ends in one of two ways:

* refused: exit code 2, one ``Error:`` line that names the file, field or value, and no traceback;
* a counted skip: exit code 0, the unreadable picture named in a "skipped" count, the rest done.

Either way nothing outside the case's own output folder changes: the shared inputs (models, pictures, tables) are
fingerprinted before and after every case."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

import fsx
from conftest import run_fsx
from fsx.data import SynthFaces

REFUSED, SKIPPED = "refused", "skipped"
# The bytes of a pickle (protocol 2) of {"w": [1.0, 2.0]}, written out here so that no test imports a pickle module:
# fsx must refuse such a file without ever unpickling it.
PICKLED = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01]q\x02(G?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00es."
# About 40 subprocesses, 80 s on two cores: CI runs the corpus, the quick subset (-m "not slow") leaves it out.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The inputs every case reads: good and broken models, pictures good and bad, labelled folders."""
    w = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    model = fsx.build_model("pose,id,expr,style", image_size=32, width=0.0625)
    fsx.save_model(model, w / "model.safetensors")
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.startswith("aae.G.")).view(-1)[0] = float("nan")
    fsx.save_model(model, w / "nan.safetensors")
    (w / "pickle.safetensors").write_bytes(PICKLED)  # a pickle under our suffix
    (w / "truncated.safetensors").write_bytes((w / "model.safetensors").read_bytes()[:200])
    faces = w / "faces"
    faces.mkdir()
    data = SynthFaces("test", image_size=32, persons=4, frames_per_clip=4, cache=False)
    for i, img in enumerate(data.images(list(range(4)))):
        Image.fromarray((img.permute(1, 2, 0) * 255).byte().numpy()).save(faces / f"face{i}.png")
    (faces / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (faces / "text.png").write_text("not a picture")
    os.mkfifo(faces / "pipe.png")
    (w / "a_file").write_text("a file where a folder is expected")
    for name, outside_file in (("dotdot", "../faces/face0.png"), ("absolute", str(faces / "face1.png"))):
        folder = w / name
        folder.mkdir()
        rows = [{"file": f"f{i}.png", "person": str(i % 2), "yaw": "0", "pitch": "0", "roll": "0"} for i in range(3)]
        for i in range(3):
            (folder / f"f{i}.png").write_bytes((faces / f"face{i}.png").read_bytes())
        rows.append({"file": outside_file, "person": "1", "yaw": "0", "pitch": "0", "roll": "0"})
        with open(folder / "labels.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return w


def _fingerprint(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


M, NAN, PICKLE, CUT = "{w}/model.safetensors", "{w}/nan.safetensors", "{w}/pickle.safetensors", "{w}/truncated.safetensors"
FACE, UNDER_A_FILE = "{w}/faces/face0.png", "{w}/a_file/out"
TINY = ("--preset", "tiny")

# (entry point, class of bad input, arguments, outcome, what the one line must name). "{w}" is the shared inputs'
# folder, "{out}" the case's own output folder.
CASES = [
    # models that are not what they claim
    ("info", "missing file", ["{w}/nope.safetensors"], REFUSED, "nope.safetensors"),
    ("info", "pickle renamed", [PICKLE], REFUSED, "pickle.safetensors"),
    ("info", "truncated model", [CUT], REFUSED, "truncated.safetensors"),
    ("encode", "NaN weight", [NAN, FACE, "--out", "{out}/e.safetensors", "--no-align"], REFUSED, "NaN or Inf"),
    ("generate", "pickle renamed", [PICKLE, "--out", "{out}/g.png"], REFUSED, "pickle.safetensors"),
    ("eval", "truncated model", [CUT, "--out", "{out}"], REFUSED, "truncated.safetensors"),
    ("train", "pickle as --init", [*TINY, "--init", PICKLE, "--out", "{out}"], REFUSED, "pickle.safetensors"),
    # pictures that cannot be read
    ("encode", "missing picture", [M, "{w}/faces/nope.png", "--out", "{out}/e.safetensors", "--no-align"], REFUSED, "nope.png"),
    ("encode", "corrupt picture", [M, FACE, "{w}/faces/corrupt.png", "--out", "{out}/e.safetensors", "--no-align"], SKIPPED, "corrupt.png"),
    ("encode", "text named .png", [M, FACE, "{w}/faces/text.png", "--out", "{out}/e.safetensors", "--no-align"], SKIPPED, "text.png"),
    ("encode", "FIFO named .png", [M, FACE, "{w}/faces/pipe.png", "--out", "{out}/e.safetensors", "--no-align"], SKIPPED, "pipe.png"),
    ("encode", "index outside the source", [M, "synthfaces:test:-1", "--out", "{out}/e.safetensors", "--no-align"], REFUSED, "-1"),
    ("retrieve", "missing gallery", [M, "--query", FACE, "--gallery", "{w}/nope"], REFUSED, "nope"),
    ("edit", "FIFO named .png", [M, "--source", "{w}/faces/pipe.png", "--target", FACE, "--attributes", "expr",
                                 "--out", "{out}/x.png", "--no-align"], REFUSED, "pipe.png"),
    # tables whose files leave their folder
    ("train", "labels.csv row through ..", [*TINY, "--data", "mine={w}/dotdot", "--out", "{out}"], REFUSED, "row 5"),
    ("train", "labels.csv row absolute", [*TINY, "--data", "mine={w}/absolute", "--out", "{out}"], REFUSED, "row 5"),
    ("eval", "labels.csv row through ..", [M, "--data", "mine={w}/dotdot", "--out", "{out}"], REFUSED, "lies outside"),
    ("audit", "labels.csv row absolute", [M, "--data", "mine={w}/absolute", "--out", "{out}"], REFUSED, "lies outside"),
    # names and values that mean nothing
    ("train", "unknown attribute", [*TINY, "--attributes", "pose,gaze", "--out", "{out}"], REFUSED, "gaze"),
    ("train", "unknown data source", [*TINY, "--data", "mine={w}/nope", "--out", "{out}"], REFUSED, "nope"),
    ("train", "negative loss weight", [*TINY, "--set", "loss.rec_phi=-5", "--out", "{out}"], REFUSED, "loss.rec_phi"),
    ("train", "infinite width", [*TINY, "--width", "inf", "--out", "{out}"], REFUSED, "width"),
    ("train", "betas that are no numbers", [*TINY, "--set", "optim.betas_aae=a,b", "--out", "{out}"], REFUSED, "betas_aae"),
    ("train", "option that is no number", [*TINY, "--option", "identity.margin=abc", "--out", "{out}"], REFUSED, "margin"),
    ("train", "seed past 64 bits", [*TINY, "--seed", str(10**20), "--out", "{out}"], REFUSED, "seed"),
    ("train", "zero steps", [*TINY, "--steps", "0", "--out", "{out}"], REFUSED, "nothing would be trained"),
    ("train", "resume of nothing", [*TINY, "--resume", "--out", "{out}"], REFUSED, "nothing to resume"),
    ("edit", "unknown attribute", [M, "--source", FACE, "--target", FACE, "--attributes", "gaze", "--out", "{out}/x.png"],
     REFUSED, "gaze"),
    ("audit", "unknown attribute", [M, "--attribute", "gaze", "--out", "{out}"], REFUSED, "gaze"),
    ("generate", "no samples", [M, "-n", "0", "--out", "{out}/g.png"], REFUSED, "-n"),
    ("synth", "no faces", ["-n", "0", "--out", "{out}/s.png"], REFUSED, "-n"),
    # outputs that cannot be written
    ("eval", "--out under a file", [M, "--out", UNDER_A_FILE], REFUSED, "a_file/out"),
    ("audit", "--out under a file", [M, "--out", UNDER_A_FILE], REFUSED, "a_file/out"),
    ("encode", "--out under a file", [M, FACE, "--out", UNDER_A_FILE + "/e.safetensors", "--no-align"], REFUSED, "a_file/out"),
    ("generate", "--out under a file", [M, "--out", UNDER_A_FILE + "/g.png"], REFUSED, "a_file/out"),
    ("synth", "--export under a file", ["--export", UNDER_A_FILE, "-n", "2"], REFUSED, "a_file/out"),
    ("train", "--out under a file", [*TINY, "--out", UNDER_A_FILE], REFUSED, "a_file/out"),
]
try:
    import dlib  # noqa: F401  (fsx prepare needs the faces extra)

    CASES.append(("prepare", "labels.csv row through ..", ["mine={w}/dotdot", "--out", "{out}"], REFUSED, "row 5"))
except ImportError:
    pass
if not torch.cuda.is_available():
    CASES.append(("train", "--device cuda without a GPU", [*TINY, "--device", "cuda", "--out", "{out}"], REFUSED,
                  "--device cuda"))


@pytest.mark.parametrize("command, kind, args, outcome, named", CASES,
                         ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_hostile_input(world, tmp_path, command, kind, args, outcome, named):
    out = tmp_path / "out"
    named = named.format(w=world, out=out)
    before = _fingerprint(world)
    p = run_fsx(command, *(a.format(w=world, out=out) for a in args), timeout=300)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    if outcome == REFUSED:
        assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
        errors = [line for line in p.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and named in errors[0], p.stderr[-2000:]
    else:
        assert p.returncode == 0, p.stderr[-2000:]
        assert "skipped 1 unreadable image" in p.stderr and named in p.stderr, p.stderr[-2000:]
    assert _fingerprint(world) == before  # nothing outside the case's own output changed
