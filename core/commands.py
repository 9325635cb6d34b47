"""Commands of the ``fsx`` CLI beyond the basic ones (kept apart so cli.py stays one screen)."""

from __future__ import annotations

import click

import fsx
from fsx.cli import AttributeList, main


@main.command()
@click.option("--attributes", "attributes", type=AttributeList(), default="pose,id,expr,style", show_default=True,
              help="Comma-separated attribute names or aliases; the order is the sub-vector layout.")
@click.option("--image-size", type=click.Choice(["32", "64", "128", "256"]), default="64", show_default=True)
@click.option("--width", type=float, default=0.25, show_default=True, help="Channel width multiplier.")
@click.option("--preset", default="demo", show_default=True)
@click.option("--steps", type=int, default=0)
@click.option("--out", type=click.Path(file_okay=False), default="runs/fsx", show_default=True)
def train(attributes, image_size, width, preset, steps, out):
    """Train a model (for now: build it and save an untrained checkpoint to OUT/model.safetensors)."""
    from pathlib import Path

    model = fsx.FaceModel(fsx.ModelConfig.for_attributes(attributes, image_size=int(image_size), width=width))
    path = Path(out) / "model.safetensors"
    fsx.save_model(model, path, steps={})
    click.echo(f"wrote {path} with layout {model.attributes}")


@main.command()
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--size", type=click.Choice(["32", "64", "128", "256"]), default="64", show_default=True)
@click.option("--n", "n", type=click.IntRange(1, 4096), default=64, show_default=True, help="Number of faces.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--vary", type=click.Choice(["pose", "identity", "expression", "style"]), default=None,
              help="Rows of one face where only this factor changes.")
def synth(out, size, n, seed, vary):
    """Write a grid of SynthFaces (the embedded data set) to a PNG."""
    from torchvision.utils import save_image

    from fsx.data.preview import synth_grid

    images = synth_grid(n=n, size=int(size), seed=seed, vary=vary)
    save_image(images, out, nrow=8, padding=2, pad_value=1.0)
    click.echo(f"wrote {out}: {len(images)} faces at {size} px" + (f", varying {vary}" if vary else ""))
