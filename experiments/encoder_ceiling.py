"""How far the encoder E alone gets on one attribute when that attribute is all it is trained for.

The demo's targets ask E (timm's ResNet18, width 0.25, at 64 px) to learn pose, identity, expression and style
at once in a fixed number of steps. This script trains a fresh E (or one from a saved model) with direct
supervision on a single label, at the demo's batch size and learning rate, and every ``--eval-every`` steps reads
the attribute from the 99-d code z with ``fsx eval``'s own probe on persons unseen in training (the same split
and sample counts). The number it prints is a practical ceiling for that attribute at that width and step count:
in the joint stage the same steps serve every attribute and the autoencoder.

    python experiments/encoder_ceiling.py [--attribute expression|pose] [--steps 1500] [--width 0.25] [--batch 40]
                                    [--lr 5e-4] [--eval-every 300] [--init runs/demo/aae.safetensors]

expression: cross-entropy on the category through a linear head; reported as the probe's mean one-vs-rest AUC.
pose: L1 on (yaw, pitch, roll) in degrees through a linear head; reported as the ridge probe's MAE per axis.
"""

import argparse
import inspect
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import fsx
from fsx.backbones.encoder import resnet18_encoder
from fsx.data.synthfaces import SynthFaces
from fsx.eval.evaluate import evaluate
from fsx.attributes.expression import AFFECTNET_CATEGORIES
from fsx.eval.probes import classification_auc, ridge_fit_predict

# test_persons, train_samples, test_samples, seed: the probes' data exactly as fsx eval draws it
SPLIT = {k: p.default for k, p in inspect.signature(evaluate).parameters.items() if p.default is not p.empty}


@torch.no_grad()
def codes(E: nn.Module, data: SynthFaces, idx: torch.Tensor, batch: int = 256) -> torch.Tensor:
    was = E.training
    E.eval()
    z = torch.cat([E(data.get_batch(idx[s : s + batch])[0] * 2 - 1) for s in range(0, len(idx), batch)])
    E.train(was)
    return z


def probe(attribute: str, E, train, tr_idx, test, te_idx) -> str:
    z_tr, z_te = codes(E, train, tr_idx), codes(E, test, te_idx)
    lab_tr, lab_te = train.labels_of(tr_idx), test.labels_of(te_idx)
    if attribute == "expression":
        res = classification_auc(z_tr, lab_tr["category"].long(), z_te, lab_te["category"].long(),
                                 len(AFFECTNET_CATEGORIES), seed=SPLIT["seed"])
        return f"mean AUC {res['average']:.3f}"
    mae = (ridge_fit_predict(z_tr, lab_tr["pose"].float(), z_te) - lab_te["pose"].float()).abs().mean(0)
    return "MAE yaw/pitch/roll " + "/".join(f"{v:.2f}" for v in mae.tolist()) + " deg"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attribute", choices=("expression", "pose"), default="expression")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--init", help="start from this model's E (a .safetensors written by fsx train)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    seed = SPLIT["seed"]
    train = SynthFaces("train", image_size=64, seed=seed)
    test = SynthFaces("test", image_size=64, persons=SPLIT["test_persons"], seed=seed, cache=False)
    g = torch.Generator().manual_seed(seed)  # the same draw as fsx eval's
    tr_idx = torch.randperm(len(train), generator=g)[: SPLIT["train_samples"]].sort().values
    te_idx = torch.randperm(len(test), generator=g)[: SPLIT["test_samples"]].sort().values

    E = fsx.load(args.init).aae.E if args.init else resnet18_encoder(99, 64, args.width)
    outputs = len(AFFECTNET_CATEGORIES) if args.attribute == "expression" else 3  # categories, or yaw/pitch/roll
    head = nn.Linear(99, outputs)  # 99: the code z
    opt = torch.optim.Adam([*E.parameters(), *head.parameters()], args.lr, betas=(0.5, 0.999))  # the demo's Adam
    draw = torch.Generator().manual_seed(args.seed)
    print(f"E {'from ' + args.init if args.init else f'fresh, width {args.width}'}; {args.attribute}; "
          f"batch {args.batch}, lr {args.lr}")
    print(f"step 0: {probe(args.attribute, E, train, tr_idx, test, te_idx)}", flush=True)
    t, images = time.perf_counter(), 0
    for step in range(1, args.steps + 1):
        x, lab = train.get_batch(torch.randint(len(train), (args.batch,), generator=draw))
        out = head(E(x * 2 - 1))
        if args.attribute == "expression":
            loss = F.cross_entropy(out, lab["category"].long())
        else:
            loss = (out - lab["pose"].float()).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        images += len(x)
        if step % args.eval_every == 0 or step == args.steps:
            rate = images / (time.perf_counter() - t)
            result = probe(args.attribute, E, train, tr_idx, test, te_idx)
            print(f"step {step}: loss {loss.detach().item():.3f}, {result} ({rate:.0f} img/s training)", flush=True)
            t, images = time.perf_counter(), 0


if __name__ == "__main__":
    main()
