"""Parse ``--data`` into data sources.

    synthfaces                                 SynthFaces with every label
    ids=synthfaces:person,expr=synthfaces:valence+arousal+category
                                               label-partial views of SynthFaces (Sec. 3.9)
    celeba=/data/celeba, affectnet=..., vggface2=..., voxceleb=...
                                               the paper's data sets in their official layouts (fsx.data.real)
    mine=/path/to/folder                       a folder with labels.csv (fsx.data.folder)
    mine=outside:/path/to/folder               the same, its files allowed outside the folder
    celeba=prepared:/data/prepared/celeba      fsx prepare's output (fsx.data.faces.prepared)

and one picture of a source, where the commands that use a model take a picture (``parse_picture``):

    synthfaces:SPLIT:INDEX                     a SynthFaces sample (SPLIT train, val or test), rendered
    prepared:DIR:ROW                           a crop of fsx prepare's output
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from fsx.data.faces.prepared import PreparedSource
from fsx.data.folder import FolderSource, folder_target
from fsx.data.images import ImageReadError
from fsx.data.labels import declared_labels
from fsx.data.real import LOADERS
from fsx.data.synthfaces import CLIPS_PER_PERSON, FRAMES_PER_CLIP, LABEL_FIELDS, PERSONS, SynthFaces, SynthStream

STREAM_PERSONS = 64  # persons a streamed SynthFaces renders per step (its macro-batches choose among them)


def join_vector_labels(labels: dict, declared: dict | None = None) -> dict:
    """Add every declared vector label whose columns the source has as single fields (a plugin's ``light`` from
    SynthFaces' light_x and light_y); returns ``labels``."""
    for label in (declared if declared is not None else declared_labels()).values():
        if label.kind == "vector" and label.name not in labels and all(c in labels for c in label.columns):
            labels[label.name] = torch.stack([labels[c].float() for c in label.columns], 1)
    return labels


def parse_sources(spec: str, image_size: int, seed: int = 0, persons: int = PERSONS["train"],
                  clips: int = CLIPS_PER_PERSON, frames: int = FRAMES_PER_CLIP,
                  split: str = "train") -> list:
    """A list of sources (each with ``name``, ``labels``, ``__len__`` and ``get_batch``). ``persons`` 0 streams
    SynthFaces: new persons every step (``SynthStream``), the train split only."""
    synth = None

    def synthfaces():
        nonlocal synth
        if synth is None:
            if persons == 0 and split == "train":
                synth = SynthStream(image_size, STREAM_PERSONS, clips, frames, seed, add_labels=join_vector_labels)
            else:
                synth = SynthFaces(split, image_size=image_size, persons=persons or PERSONS[split],
                                   clips_per_person=clips, frames_per_clip=frames, seed=seed)
                join_vector_labels(synth.labels)
        return synth

    sources = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        name, _, target = item.partition("=")
        if not target:
            name, target = item, item
        kind, _, fields = target.partition(":")
        folder, outside = folder_target(target)
        if kind == "synthfaces":
            data = synthfaces()
            labels = tuple(f for f in fields.split("+") if f) if fields else (
                LABEL_FIELDS + tuple(k for k in data.labels if k not in LABEL_FIELDS and k != "frame"))
            sources.append(synthfaces().source(labels, name=name))
        elif kind == "prepared":
            sources.append(PreparedSource(fields, image_size=image_size, name=name))
        elif name in LOADERS and Path(target).is_dir():
            sources.append(LOADERS[name](target, image_size=image_size, name=name))
        elif folder.is_dir():  # a folder with labels.csv (outside:FOLDER: its files may lie outside it)
            sources.append(FolderSource(folder, image_size=image_size, name=None if outside and name == item else name,
                                        outside=outside))
        else:
            raise ValueError(f"--data {item!r}: {target!r} is neither 'synthfaces[:fields]' nor an existing folder")
    if not sources:
        raise ValueError("--data names no source")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"--data: source names repeat: {names}")
    return sources


class UnlabelledAttributeError(ValueError):
    """An attribute to be trained that no data source labels."""


def labelling_sources(attributes, sources) -> dict[str, list[str]]:
    """attribute name -> the sources that label it (carry all its label fields, for at least one sample).

    Raises UnlabelledAttributeError for an attribute no source labels: training it would be a silent no-op."""
    out = {}
    for a in attributes:
        out[a.name] = [s.name for s in sources if a.has_labels(s.labels) and bool(a.labelled_rows(s.labels).any())]
        if not out[a.name]:
            needs = ", ".join(f"{lab.name} ({lab.kind}{', ' + lab.unit if lab.unit else ''})" for lab in a.labels)
            offers = "; ".join(f"{s.name} offers {', '.join(sorted(s.labels)) or 'no labels'}" for s in sources)
            raise UnlabelledAttributeError(
                f"attribute {a.name!r} needs the label(s) {needs}, which no data source labels ({offers}); add a "
                f"source that has them, or leave {a.name!r} out of --attributes")
    return out


def parse_picture(spec: str, size: int):
    """One sample named as ``synthfaces:SPLIT:INDEX`` or ``prepared:DIR:ROW``: its picture (3, size, size) in [0, 1];
    None for any other name (a file). A name of either kind that does not resolve raises ImageReadError naming it."""
    if spec.startswith("synthfaces:"):
        try:
            _, split, index = spec.split(":")
            data = _synthfaces(split, size)
            return data.images([_index(index, len(data))])[0]
        except (ValueError, IndexError, KeyError) as exc:
            raise ImageReadError(f"{spec}: not a SynthFaces sample (synthfaces:train|test:INDEX): {exc}") from None
    if spec.startswith("prepared:"):
        folder, _, row = spec[len("prepared:"):].rpartition(":")
        try:
            data = _prepared(folder, size)
            return data.get_batch([_index(row, len(data))])[0][0]
        except (ValueError, IndexError, FileNotFoundError) as exc:
            raise ImageReadError(f"{spec}: not a prepared crop (prepared:DIR:ROW): {exc}") from None
    return None


def _index(raw: str, n: int) -> int:
    """A sample's index as written in a picture name: 0 to n - 1 (never counted from the end)."""
    i = int(raw)
    if not 0 <= i < n:
        raise IndexError(f"index {i} is outside 0..{n - 1}")
    return i


@functools.lru_cache(maxsize=4)
def _synthfaces(split: str, size: int) -> SynthFaces:
    return SynthFaces(split, image_size=size, cache=False)  # rendered per picture: a name reads one sample


@functools.lru_cache(maxsize=4)
def _prepared(folder: str, size: int) -> PreparedSource:
    return PreparedSource(folder, image_size=size)
