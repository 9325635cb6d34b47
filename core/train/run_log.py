"""What a run shows while it trains: metrics.jsonl (and TensorBoard when installed), the console line or
progress bar, and the sample grids in OUT/samples."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fsx.eval.figures import reconstructions

CONSOLE_TERMS = ("rec", "adv", "rec_phi", "cyc")  # shown on the progress bar with every task_* term (not its parts)


def _record(line: str) -> dict | None:
    """One metrics.jsonl line as a dict, or None where it is not a JSON object."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class MetricsLog:
    """One JSON line per log step in OUT/metrics.jsonl; a resumed run first drops the lines logged after the
    checkpoint it resumes from, so the file never holds two histories."""

    def __init__(self, out: Path, resume: bool, global_step: int, report=print):
        self.path = Path(out) / "metrics.jsonl"
        if resume and self.path.exists():
            keep, bad = [], []
            for number, line in enumerate(self.path.read_text(errors="replace").splitlines(), 1):
                record = _record(line)
                if record is None and line.strip():
                    bad.append(number)
                elif record is not None and record.get("global_step", 0) <= global_step:
                    keep.append(line)
            if bad:  # a log line a full disk cut short, or a hand edit: the log goes on without it, and says so
                report(f"{self.path}: {len(bad)} unreadable line(s) dropped (line {', '.join(map(str, bad[:5]))}"
                       f"{', ...' if len(bad) > 5 else ''}); the run resumes from its checkpoint")
            self.path.write_text("".join(line + "\n" for line in keep))
        elif not resume:
            self.path.write_text("")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(out) / "tensorboard"))
        except Exception:  # tensorboard not installed: JSONL only
            self.writer = None

    def write(self, record: dict, means: dict, total: int, rate: float, bar) -> None:
        stage = record["stage"]
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "global_step"):
                    self.writer.add_scalar(f"{stage}/{k}", v, record["global_step"])
        if bar is not None:
            shown = [k for k in means if k in CONSOLE_TERMS or (k.startswith("task_") and "." not in k)]
            short = {k: f"{means[k]:.3f}" for k in shown}
            bar.set_postfix(short | {"img/s": f"{rate:.0f}"}, refresh=False)
        if bar is None or bar.disable:
            print(f"[{stage} {record['step']}/{total}] " + " ".join(
                f"{k}={v:.4f}" for k, v in sorted(means.items())) + f" img/s={rate:.1f}", flush=True)

    def write_judge(self, record: dict) -> None:
        """A line of the judge's readings (``fsx.train.judging``), against global step and training minutes."""
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k.startswith("judge/"):
                    self.writer.add_scalar(k, v, record["global_step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@torch.no_grad()
def preview_batch(source) -> torch.Tensor:
    """The 8 pictures of ``source`` that every sample grid of a run shows (read once, before the first step)."""
    return source.get_batch(list(range(0, min(len(source), 8 * 37), 37))[:8])[0]


def save_grids(model, images: torch.Tensor, folder: Path, tag: str) -> None:
    """Reconstructions, random samples and one-attribute swaps of the preview batch ``images``, as PNGs (the
    caller puts the model back into its stage's modes)."""
    from torchvision.utils import save_image

    model.eval()
    images = images.to(model.device)
    save_image(reconstructions(model, images), folder / f"{tag}-reconstructions.png", nrow=8)
    save_image(model.generate(16, generator=torch.Generator().manual_seed(0)), folder / f"{tag}-samples.png", nrow=8)
    rows = [images]
    for name in model.attributes:  # row k: each face with the first face's sub-vector k
        rows.append(model.transfer(images[:1], images, [name]))
    save_image(torch.cat(rows), folder / f"{tag}-swaps.png", nrow=8)
