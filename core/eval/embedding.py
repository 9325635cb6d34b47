"""Measures of the embedding on any labelled source: every attribute's probe on every sub-vector (and on
everything but it), and the reconstruction error."""

from __future__ import annotations

import math

import torch

from fsx.eval.metrics import verification_accuracy
from fsx.eval.probes import classification_auc, cosine_scores, ridge_fit_predict, sample_pairs

# Below this many distinct same-group pairs a verification accuracy is mostly noise (its standard error near 0.07
# at 50), so the attribute is reported as not measured instead.
MIN_POSITIVE_PAIRS = 50


def encode_all(model, data, indices, batch: int = 256) -> dict[str, torch.Tensor]:
    """{attribute: (N, dim), "z": (N, z_dim), "f": (N, f_dim)} for the given samples of a data source."""
    return model.encode_batches(data.get_batch(indices[s : s + batch])[0] for s in range(0, len(indices), batch))


@torch.no_grad()
def reconstruction_rmse(model, data, indices, batch: int = 256) -> dict[str, float]:
    """RMSE on the 0-255 scale of G(E(x)) (the autoencoder) and of G(Phi^-1(Phi(E(x)))) (the embedding)."""
    se_aae = se_phi = n = 0.0
    for s in range(0, len(indices), batch):
        x, _ = data.get_batch(indices[s : s + batch])
        x = x.to(model.device)
        se_aae += float(((model.autoencode(x) - x) * 255).pow(2).sum())
        se_phi += float(((model.reconstruct(x) - x) * 255).pow(2).sum())
        n += x.numel()
    return {"aae": math.sqrt(se_aae / n), "embedding": math.sqrt(se_phi / n)}


def subvectors(emb: dict, names: list[str]) -> dict[str, torch.Tensor]:
    """Every attribute's sub-vector and, per attribute, everything but it (f_not_k)."""
    subs = {n: emb[n] for n in names}
    for n in names:
        subs[f"not_{n}"] = torch.cat([emb[m] for m in names if m != n], 1)
    return subs


def probe_table(attributes, emb_train, lab_train, emb_test, lab_test, names, seed: int = 0) -> tuple[dict, dict, dict]:
    """{attribute: {sub-vector: result}} where result holds the probe's headline number and its details; the
    probes' predictions from the own sub-vector; and {attribute: why it was not measured}."""
    table, predictions, not_measured = {}, {}, {}
    train_subs, test_subs = subvectors(emb_train, names), subvectors(emb_test, names)
    for a in attributes:
        p = a.probe
        if p is None:
            not_measured[a.name] = "its plugin declares no probe"
            continue
        missing = [where for where, lab in (("test", lab_test), ("probe-fitting", lab_train)) if p.label not in lab]
        if p.kind == "verification":
            missing = [m for m in missing if m == "test"]  # verification fits nothing
        if missing:
            not_measured[a.name] = f"the {' and '.join(missing)} data has no {p.label!r} label"
            continue
        keep_te = a.label_present(p.label, lab_test[p.label])
        keep_tr = a.label_present(p.label, lab_train[p.label]) if p.label in lab_train else None
        if int(keep_te.sum()) < 10 or (p.kind != "verification" and int(keep_tr.sum()) < 10):
            not_measured[a.name] = f"fewer than 10 samples carry its {p.label!r} label"
            continue
        if p.kind == "verification":
            within = lab_test[p.within][keep_te] if p.within else None
            across = lab_test[p.across][keep_te] if p.across and p.across in lab_test else None
            i, j, same = sample_pairs(lab_test[p.label][keep_te], 6000, within=within, across=across, seed=seed)
            if int(same.sum()) < MIN_POSITIVE_PAIRS:
                not_measured[a.name] = (f"only {int(same.sum())} distinct pairs of test samples share a {p.label!r} "
                                        f"(at least {MIN_POSITIVE_PAIRS} are needed for a verification accuracy)")
                continue
        row = {}
        for sub in [*names, f"not_{a.name}"]:
            xs = test_subs[sub][keep_te]
            y_test = lab_test[p.label][keep_te]
            if p.kind != "verification":
                xt, y_train = train_subs[sub][keep_tr], lab_train[p.label][keep_tr]
            if p.kind == "regression":
                y_train, y_test = y_train.float().view(len(y_train), -1), y_test.float().view(len(y_test), -1)
                pred = ridge_fit_predict(xt, y_train, xs)
                mae = (pred - y_test).abs().mean(0)
                base = (y_train.mean(0) - y_test).abs().mean(0)
                comps = list(p.component_names) or ([p.label] if len(mae) == 1 else [f"{p.label}{i}" for i in range(len(mae))])
                row[sub] = {"value": float(mae.mean()), "per_component": dict(zip(comps, mae.tolist())),
                            "chance": float(base.mean()), "chance_per_component": dict(zip(comps, base.tolist()))}
                if sub == a.name:
                    predictions[a.name] = pred
            elif p.kind == "verification":
                acc = verification_accuracy(cosine_scores(xs, i, j), same)
                row[sub] = {"value": acc, "pairs": int(len(i)), "same_pairs": int(same.sum()),
                            "stderr": math.sqrt(acc * (1 - acc) / max(len(i), 1)), "chance": 0.5}
            elif p.kind == "classification":
                classes = len(p.class_names) or int(max(y_train.max(), y_test.max())) + 1
                res = classification_auc(xt, y_train.long(), xs, y_test.long(), classes, seed=seed)
                names_c = list(p.class_names) or [str(c) for c in range(classes)]
                row[sub] = {"value": res["average"], "per_class": dict(zip(names_c, res["per_class"])), "chance": 0.5}
                if sub == a.name:
                    predictions[a.name] = res["predicted"]
        table[a.name] = {"kind": p.kind, "label": p.label, "unit": p.unit, "samples": int(keep_te.sum()),
                         "results": row}
    return table, predictions, not_measured
