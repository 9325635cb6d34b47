"""The factors are visible in the pixels: a small CNN learns yaw, expression category and person quickly."""

import torch
import torch.nn as nn

from fsx.data import SynthFaces
import pytest


@pytest.mark.slow
def test_small_cnn_beats_chance_on_yaw_category_and_person():
    torch.manual_seed(0)
    data = SynthFaces("train", image_size=64, persons=10, clips_per_person=4, frames_per_clip=16, cache=False)
    n = len(data)
    images, labels = data.get_batch(range(n))
    perm = torch.randperm(n)
    train, test = perm[: int(0.8 * n)], perm[int(0.8 * n) :]
    person = labels["person"]
    yaw = labels["pose"][:, 0] / 45.0
    cat = labels["category"]

    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),  # 32
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # 16
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # 8
        nn.Conv2d(64, 96, 3, padding=1), nn.BatchNorm2d(96), nn.ReLU(), nn.MaxPool2d(2),  # 4
        nn.Flatten(), nn.Linear(96 * 16, 128), nn.ReLU(), nn.Linear(128, 1 + 8 + 10),
    )
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for epoch in range(12):
        net.train()
        for idx in train[torch.randperm(len(train))].split(32):
            out = net(images[idx])
            loss = (nn.functional.mse_loss(out[:, 0], yaw[idx]) + nn.functional.cross_entropy(out[:, 1:9], cat[idx])
                    + nn.functional.cross_entropy(out[:, 9:], person[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        out = net(images[test])
    yaw_mae = (out[:, 0] - yaw[test]).abs().mean() * 45
    yaw_chance = (yaw[test] - yaw[train].mean()).abs().mean() * 45
    cat_acc = (out[:, 1:9].argmax(1) == cat[test]).float().mean()
    person_acc = (out[:, 9:].argmax(1) == person[test]).float().mean()
    print(f"yaw MAE {yaw_mae:.1f} deg (chance {yaw_chance:.1f}), category {cat_acc:.2f} (chance 0.125), person {person_acc:.2f} (chance 0.10)")
    assert yaw_mae < 0.75 * yaw_chance
    assert cat_acc > 0.3  # 2.4x chance
    assert person_acc > 0.5
