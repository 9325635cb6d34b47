"""SynthStream: unlimited SynthFaces persons, new every step, deterministic by (seed, step)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import kill_9_after_checkpoint, run_fsx
from fsx.attributes.base import SamplerSpec
from fsx.data.sampling import BatchSampler
from fsx.data.sources import parse_sources
from fsx.data.synthfaces import SynthFaces, SynthStream


def test_each_step_renders_persons_of_its_own_and_the_same_ones_again_for_the_same_step():
    stream = SynthStream(image_size=32, persons=8, clips_per_person=2, frames_per_clip=4, seed=0)
    picks = [0, 5, 17, 40]
    x1, l1 = stream.get_batch(stream.at_step(1, picks))
    x1b, l1b = stream.get_batch(stream.at_step(1, picks))
    x2, l2 = stream.get_batch(stream.at_step(2, picks))
    assert torch.equal(x1, x1b) and all(torch.equal(l1[k], l1b[k]) for k in l1)
    assert not torch.equal(x1, x2)
    assert not set(l1["person"].tolist()) & set(l2["person"].tolist())  # no person comes back
    assert not set(l1["clip"].tolist()) & set(l2["clip"].tolist())
    # the same template positions: the same clip/frame structure, other persons
    assert torch.equal(l1["frame"], l2["frame"])
    p1, p2 = stream.generation(1).params["identity"], stream.generation(2).params["identity"]
    assert not torch.equal(p1, p2)
    # another seed, other persons; and none of the fixed train, validation or test persons
    other = SynthStream(image_size=32, persons=8, clips_per_person=2, frames_per_clip=4, seed=1)
    assert not torch.equal(other.generation(1).params["identity"], p1)
    for split in ("train", "val", "test"):
        fixed = {tuple(r.tolist()) for r in SynthFaces(split, persons=100, frames_per_clip=1, cache=False).params["identity"]}
        assert not any(tuple(r.tolist()) in fixed for g in range(3) for r in stream.generation(g).params["identity"])


def test_macro_batches_of_a_stream_keep_persons_with_several_clips_and_frames():
    stream = SynthStream(image_size=32, persons=16, clips_per_person=4, frames_per_clip=4, seed=0)
    sampler = BatchSampler(stream.labels, SamplerSpec(("person", "clip"), (5, 4)), batch_size=40, seed=0)
    _, labels = stream.get_batch(stream.at_step(7, next(sampler)))
    assert len(labels["person"].unique()) == 5 and len(labels["clip"].unique()) == 20
    clip_person = {}
    for c, p in zip(labels["clip"].tolist(), labels["person"].tolist()):
        assert clip_person.setdefault(c, p) == p  # each clip belongs to one person


def test_synth_persons_0_streams_and_joins_vector_labels():
    (source,) = parse_sources("synthfaces", 32, seed=0, persons=0, clips=2, frames=4)
    assert isinstance(source.parent, SynthStream)
    _, labels = source.get_batch(source.at_step(3, [0, 1, 2]))
    assert labels["pose"].shape == (3, 3) and "person" in labels
    (fixed,) = parse_sources("synthfaces", 32, seed=0, persons=10, clips=2, frames=4)
    assert fixed.at_step(3, [0, 1, 2]) == [0, 1, 2]


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.slow
def test_a_streamed_run_killed_and_resumed_ends_bit_identical(tmp_path, workers):
    """The stream's pictures depend on (seed, step) only: a run killed with SIGKILL mid-run and resumed (with a
    DataLoader worker rendering the coming steps, or rendering in the loop) ends with exactly the weights of an uninterrupted one."""
    args = ["train", "--preset", "tiny", "--steps", "aae=6,disentangle=2,joint=4,refit=0", "--set", "synth.persons=0",
            "--ckpt-every", "2", "--seed", "3"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_fsx(*args, "--workers", workers, "--out", full, check=True)
    assert json.loads((full / "config.json").read_text())["synth"]["persons"] == 0
    assert kill_9_after_checkpoint([*args, "--workers", workers], cut, 4) >= 4
    run_fsx(*args, "--workers", workers, "--out", cut, "--resume", check=True)
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_workers_render_a_stream_after_this_process_rendered(tmp_path):
    """The compiled renderer runs on GNU OpenMP, which aborts a forked child of a process that used it: a notebook
    that drew a grid and then trains on a stream with workers must still get its batches (started by spawn), the
    same ones as without workers."""
    from fsx.plugins import get_registry
    from fsx.train.batches import BatchSchedule

    SynthFaces("val", image_size=32, persons=2, frames_per_clip=2, cache=False).images([0, 1])  # OpenMP now in use
    attributes = get_registry().resolve("pose,id,expr,style")

    def first_batches(workers):
        sources = parse_sources("synthfaces", 32, seed=0, persons=0, clips=2, frames=4)
        schedule = BatchSchedule(sources, attributes, 8, seed=0, rank=0, mirror_p=0.5,
                                 generator=torch.Generator().manual_seed(0), workers=workers)
        try:
            return [schedule.next(step)[1] for step in range(3)]
        finally:
            schedule.close()

    for a, b in zip(first_batches(0), first_batches(1)):
        assert torch.equal(a, b)
