"""What a checkpoint's z and f_expression hold about expression, and whether Phi has collapsed f_expression.

    python experiments/expression_probe.py CKPT.safetensors [...]

Per checkpoint (a stage's .safetensors or a model): the paper's expression probe (Sec. 5.3.3, ``fsx.eval.probes``)
fitted on 3,000 pictures of SynthFaces training persons and measured on 1,600 of validation persons, as the mean
one-vs-rest AUC (chance 0.5), on z and on f_expression; and the mean pairwise cosine of f_expression over the
validation pictures (near 1: Phi maps every face to one direction, the expression loss's uniform state, from which
its gradient barely reaches E).
"""

import sys

import torch
import torch.nn.functional as F

import fsx
from fsx.data.synthfaces import SynthFaces
from fsx.eval.probes import classification_auc


def pictures(split: str, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = SynthFaces(split, image_size=size, cache=False)
    pick = torch.randperm(len(data.labels["person"]), generator=torch.Generator().manual_seed(0))[:n]
    x, labels = data.get_batch(pick)
    return x, labels["category"]


def main(paths: list[str]) -> None:
    torch.manual_seed(0)
    cache = {}
    for path in paths:
        model = fsx.load(path)
        if model.image_size not in cache:
            cache[model.image_size] = pictures("train", 3000, model.image_size), pictures("val", 1600, model.image_size)
        (x_fit, y_fit), (x_val, y_val) = cache[model.image_size]
        with torch.no_grad():
            fit, val = model.encode_batches(x_fit.split(250)), model.encode_batches(x_val.split(250))
        auc = {k: classification_auc(fit[k].float(), y_fit, val[k].float(), y_val, classes=8)["average"]
               for k in ("z", "expression")}
        f = F.normalize(val["expression"].float(), dim=1)
        cosine = (f @ f.T).fill_diagonal_(0).sum() / (len(f) * (len(f) - 1))
        print(f"{path}: expression AUC z {auc['z']:.3f}, f_expression {auc['expression']:.3f}; "
              f"f_expression mean pairwise cosine {cosine:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
