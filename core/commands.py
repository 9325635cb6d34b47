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
