"""What a plain autoencoder of fsx's E and G draws, read by the independent judge.

The demo's G(E(x)) keeps skin, hair and background and loses eyes and mouth. This script trains E and G alone
(no GAN terms, no prior, no attributes) on the SynthFaces train split with a chosen reconstruction loss, and
every ``--eval-every`` steps reads the reconstructions of persons unseen in training with ``fsx.eval.judge``:
pose MAE, expression accuracy and identity verification against the judge's reading of the real pictures, and
the RMSE on the 0-255 scale. It separates what the reconstruction loss and the decoder's size allow from what
the adversarial and disentangling terms cost.

    python experiments/autoencoder.py [--loss l1|squared|laplacian] [--steps 1500] [--width 0.25] [--g-width W]
                                [--batch 40] [--lr 5e-4] [--eval-every 500] [--split val|test|train] [--part-weight A]
                                [--feature-match W] [--gan W] [--code encoder|exact] [--precision fp32|bf16]
                                [--save PNG] [--generator NAME] [--floor C] [--ssim W] [--scales W] [--perceptual W]
                                [--stream] [--minutes M]

``--part-weight A`` asks whether paying for the expression's parts lets G draw them: each training batch is
rendered a second time with other samples' expressions (SynthFaces' exact counterfactual), the pixels that change
(eyes, brows, mouth) form a mask, and the L1 of those pixels weighs 1 + A (a privilege of synthetic data; on real
faces the analogue is a mask from the prepared landmarks).

``--feature-match W`` trains fsx's D_x beside E and G (real pictures against their reconstructions, BCE) and adds
W x the L1 between D_x's activations of each picture and of its reconstruction (``fsx.losses.feature_matching_l1``,
VAE-GAN's learned similarity); ``--gan W`` adds the plain adversarial term of G at weight W.

``--code exact`` takes E out: G is fed the exact render parameters of each picture (pose, identity, valence, arousal,
the category one-hot and style, each standardised over the train split, zero-padded to 99), so what it draws is
the most G can draw at that width and step count whatever an encoder learns. ``--precision bf16`` runs the
forward passes in bf16 autocast (channels_last in both precisions, as fsx trains).

``--generator skip_generator --floor C`` trains fsx's multi-scale generator (``--scales W`` adds the pixel error of
each coarser output against the pooled picture); ``--ssim W`` and ``--perceptual W`` add 1 - SSIM and the random-CNN
perceptual distance (``fsx.losses``, ``fsx.perceptual``); ``--stream`` renders new persons for every step; and
``--minutes M`` stops at a wall-clock budget, so that settings of different cost compare at equal time.
"""

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F
from torchvision.utils import save_image

from fsx import losses as L
from fsx.backbones.discriminators import dcgan_discriminator
from fsx.backbones.encoder import resnet18_encoder
from fsx.plugins import create_backbone
from fsx.perceptual import RandomPerceptual
from fsx.data.face_params import CATEGORIES
from fsx.data.synthfaces import SynthFaces, SynthStream
from fsx.eval.judge import load_judge, read
from fsx.eval.synthetic import readings, verification


@torch.no_grad()
def ceiling(judge, data, idx) -> tuple[dict, str]:
    """The judge's reading of the real pictures (once: it does not change while E and G train) and its summary."""
    x, labels = data.images(idx), data.labels_of(idx)
    real = read(judge, x)
    r = readings(real, labels)
    ver = verification(real["identity"], real["identity"], labels["person"])
    return {"x": x, "labels": labels, "real": real}, (f"x: pose {r['pose_mae']:.2f} deg, expression "
                                                     f"{100 * r['expression_accuracy']:.1f}%, identity {100 * ver:.1f}%")


class ExactCode(torch.nn.Module):
    """Stands in for E: a picture's exact render parameters as a standardised 99-d code (needs no pixels)."""

    def __init__(self, train: SynthFaces, dim: int = 99):
        super().__init__()
        self.dim = dim
        every = self.raw(train.params_of(range(len(train))))
        self.register_buffer("mean", every.mean(0))
        self.register_buffer("std", every.std(0).clamp_min(1e-6))

    @staticmethod
    def raw(p: dict) -> torch.Tensor:
        e = p["expression"]  # valence, arousal, category
        category = F.one_hot(e[:, 2].long(), len(CATEGORIES)).float()
        return torch.cat([p["pose"] / 30, p["identity"], e[:, :2], category, p["style"]], 1)

    def forward(self, params: dict) -> torch.Tensor:
        code = (self.raw(params) - self.mean) / self.std
        return F.pad(code, (0, self.dim - code.shape[1]))


@torch.no_grad()
def judged(E, G, judge, held: dict, batch: int = 128, save: str | None = None) -> str:
    x, labels, real = held["x"], held["labels"], held["real"]
    E.eval()
    G.eval()
    exact = isinstance(E, ExactCode)
    chunk = (lambda s: {k: v[s : s + batch] for k, v in held["params"].items()}) if exact else (
        lambda s: x[s : s + batch] * 2 - 1)
    rec = torch.cat([(G(E(chunk(s))) + 1) / 2 for s in range(0, len(x), batch)]).clamp(0, 1)
    E.train()
    G.train()
    if save:  # 8 pictures over their reconstructions
        save_image(torch.cat([x[:8], rec[:8]]), save, nrow=8, padding=1)
    out = read(judge, rec)
    r = readings(out, labels)
    ver = verification(out["identity"], real["identity"], labels["person"])
    rmse = float(((rec - x) * 255).pow(2).mean().sqrt())
    return (f"pose {r['pose_mae']:.2f} deg, expression {100 * r['expression_accuracy']:.1f}%, identity "
            f"{100 * ver:.1f}%, RMSE {rmse:.1f}")


def expression_parts(data: SynthFaces, idx: list, x: torch.Tensor, threshold: float = 0.03) -> torch.Tensor:
    """(B, 1, S, S) mask of the pixels that another sample's expression changes in each picture."""
    donors = idx[-1:] + idx[:-1]
    changed = (data.counterfactual(donors, idx, "expression") - x).abs().amax(1, keepdim=True)
    return (changed > threshold).float()


def weighted_l1(x: torch.Tensor, x_rec: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((x - x_rec).abs() * weight).sum() / (weight.sum() * x.shape[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    losses = {**L.RECONSTRUCTION_ERRORS, "laplacian": L.laplacian_l1}  # training's pixel errors and the pyramid
    ap.add_argument("--loss", choices=tuple(losses), default="l1")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--g-width", type=float, help="the generator's width (default: --width)")
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--split", choices=("val", "test", "train"), default="val",
                    help="whose pictures are read: unseen persons (val, test) or the training persons")
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part-weight", type=float, default=0.0, help="extra L1 weight on the expression's pixels")
    ap.add_argument("--feature-match", type=float, default=0.0, help="weight of D_x's feature matching")
    ap.add_argument("--save", help="write 8 held-out pictures over their reconstructions to this PNG at the end")
    ap.add_argument("--gan", type=float, default=0.0, help="weight of G's adversarial term against D_x")
    ap.add_argument("--code", choices=("encoder", "exact"), default="encoder",
                    help="G's input: E(x), or the exact render parameters (E not trained)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--generator", default="resnet18_generator", help="G's registered backbone name")
    ap.add_argument("--floor", type=int, help="skip_generator's channel floor")
    ap.add_argument("--ssim", type=float, default=0.0, help="weight of 1 - SSIM beside the pixel error")
    ap.add_argument("--scales", type=float, default=0.0,
                    help="weight of the pixel error on each coarser output of a multi-scale G (skip_generator)")
    ap.add_argument("--perceptual", type=float, default=0.0, help="weight of the random-CNN perceptual distance")
    ap.add_argument("--stream", action="store_true",
                    help="train on new persons every step (SynthStream, 64 persons per step) instead of the fixed "
                         "400 training persons")
    ap.add_argument("--minutes", type=float, default=0.0, help="stop after this many minutes (0: run every step)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    train = SynthFaces("train", image_size=64, seed=0)
    stream = SynthStream(image_size=64, persons=64, seed=0) if args.stream else None
    held = SynthFaces(args.split, image_size=64, cache=False)
    idx = torch.randperm(len(held), generator=torch.Generator().manual_seed(1))[: args.samples]
    judge = load_judge()
    reference, summary = ceiling(judge, held, idx)
    reference["params"] = held.params_of(idx)
    print(f"the judge on {len(idx)} real {args.split} pictures (the ceiling): {summary}", flush=True)
    exact = args.code == "exact"
    E = ExactCode(train) if exact else resnet18_encoder(99, 64, args.width).to(memory_format=torch.channels_last)
    g_options = {"floor": args.floor} if args.floor else {}
    G = create_backbone(args.generator, in_dim=99, image_size=64, width=args.g_width or args.width, **g_options)
    G = G.to(memory_format=torch.channels_last)
    print(f"G: {args.generator} {g_options}, {sum(p.numel() for p in G.parameters())} parameters", flush=True)
    perceptual = RandomPerceptual() if args.perceptual else None
    opt = torch.optim.Adam([*E.parameters(), *G.parameters()], args.lr, betas=(0.5, 0.999))  # the demo's Adam
    autocast = (lambda: torch.autocast("cpu", torch.bfloat16)) if args.precision == "bf16" else contextlib.nullcontext
    D = dcgan_discriminator(64, args.width) if args.feature_match or args.gan else None
    opt_d = torch.optim.Adam(D.parameters(), args.lr, betas=(0.5, 0.999)) if D else None
    loss_fn = losses[args.loss]
    draw = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = torch.randint(len(stream if stream is not None else train), (args.batch,), generator=draw).tolist()
        data = stream.generation(step) if stream is not None else train  # a stream: this step's own persons
        x, _ = data.get_batch(batch)
        xn = (x * 2 - 1).contiguous(memory_format=torch.channels_last)
        with autocast():
            code = E(data.params_of(batch) if exact else xn)
            scales = G.pyramid(code) if args.scales else [G(code)]
            x_rec = scales[-1].float()
        if args.part_weight:
            weight = 1 + args.part_weight * expression_parts(data, batch, x)
            loss = weighted_l1(xn, x_rec, weight)
        else:
            loss = loss_fn(xn, x_rec)
        if args.scales:
            loss = loss + args.scales * L.pyramid_reconstruction(xn, scales, loss_fn)
        if args.ssim:
            loss = loss + args.ssim * L.ssim_loss(xn, x_rec)
        if perceptual is not None:
            loss = loss + args.perceptual * perceptual(xn, x_rec)
        if D is not None:
            d_loss = L.bce_real(D(xn)) + L.bce_fake(D(x_rec.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            D.requires_grad_(False)
            with torch.no_grad():
                real_maps, _ = D.feature_maps(xn)
            rec_maps, logits = D.feature_maps(x_rec)
            fm = L.feature_matching_l1(real_maps, rec_maps)
            loss = loss + args.feature_match * fm + args.gan * L.bce_real(logits)
            D.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out_of_time = args.minutes and time.perf_counter() - t0 > 60 * args.minutes
        if step % args.eval_every == 0 or step == args.steps or out_of_time:
            print(f"step {step} ({time.perf_counter() - t0:.0f} s, loss {loss.item():.4f}): "
                  f"{judged(E, G, judge, reference, save=args.save if step == args.steps or out_of_time else None)}",
                  flush=True)
        if out_of_time:
            break


if __name__ == "__main__":
    main()
