"""The judge's reading of what G draws, while training: ``fsx train --judge-every N``.

Every N steps the independent SynthFaces judge (``fsx.eval.judge``) reads a fixed set of validation pictures
through the autoencoder, G(E(x)), and through the embedding, G(Phi^-1(Phi(E(x)))): pose MAE, expression
accuracy and identity verification, next to its reading of the pictures themselves. The readings go to
metrics.jsonl (with the training minutes so far), TensorBoard and the console, so a user sees generation improve or
stall long before ``fsx eval``. Validation persons: settings are chosen on them, never reported from them."""

from __future__ import annotations

import torch

from fsx.data.synthfaces import SynthFaces
from fsx.eval.judge import load_judge, read
from fsx.eval.synthetic import readings, verification

READINGS = (("ae", "autoencode"), ("emb", "reconstruct"))  # log key -> FaceModel method


class TrainingJudge:
    """A fixed set of ``n`` validation pictures and the judge; ``__call__(model)`` -> {"judge/...": value}."""

    def __init__(self, image_size: int, n: int = 256, seed: int = 0, batch: int = 64):
        data = SynthFaces("val", image_size=image_size, cache=False)
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 12345))[:n].sort().values
        self.x, self.labels, self.batch = data.images(idx), data.labels_of(idx), batch
        self.judge = load_judge()
        self.real = read(self.judge, self.x)
        r = readings(self.real, self.labels)
        self.ceiling = {"judge/x/pose_mae": r["pose_mae"], "judge/x/expression": r["expression_accuracy"],
                        "judge/x/identity": self._verification(self.real)}

    def _verification(self, reading: dict) -> float:
        return verification(reading["identity"], self.real["identity"], self.labels["person"], pairs=1000)

    @torch.no_grad()
    def __call__(self, model) -> dict[str, float]:
        """The readings of ``model``'s pictures (the caller puts the model back into its stage's modes)."""
        model.eval()
        out = dict(self.ceiling)
        for key, method in READINGS:
            fn = getattr(model, method)
            pictures = torch.cat([fn(self.x[s : s + self.batch].to(model.device)).float().cpu()
                                  for s in range(0, len(self.x), self.batch)])
            reading = read(self.judge, pictures)
            r = readings(reading, self.labels)
            out[f"judge/{key}/pose_mae"] = r["pose_mae"]
            out[f"judge/{key}/expression"] = r["expression_accuracy"]
            out[f"judge/{key}/identity"] = self._verification(reading)
        return {k: round(v, 4) for k, v in out.items()}


def judge_line(values: dict) -> str:
    """One console line: what the judge reads on x, G(E(x)) and the embedding's decode."""
    def part(key):
        return (f"pose {values[f'judge/{key}/pose_mae']:.2f} deg, expression "
                f"{100 * values[f'judge/{key}/expression']:.1f}%, identity {100 * values[f'judge/{key}/identity']:.1f}%")

    return f"judge: G(E(x)) {part('ae')} | embedding {part('emb')} | x {part('x')}"
