"""A small CNN classifier of the "shapes" classes, for the AR quality figures of issue #12
(item 4): the class accuracy of generated images and a proxy FID (Frechet distance between its
penultimate-layer features of two image sets). It is NOT ImageNet FID: no Inception network,
64-dimensional features of a classifier trained on this data set, so the numbers compare runs
of this recipe with each other and with the tokenizer's reconstruction ceiling only."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FEAT = 64


class ShapesNet(nn.Module):
    """32x32 RGB in [-1, 1] -> (logits [B, 8], features [B, 64])."""

    def __init__(self, n_classes=8):
        super().__init__()
        self.c1 = nn.Conv2d(3, 24, 3, padding=1)
        self.c2 = nn.Conv2d(24, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 48, 3, padding=1)
        self.c4 = nn.Conv2d(48, FEAT, 3, padding=1)
        self.b1, self.b2, self.b3, self.b4 = (nn.BatchNorm2d(c) for c in (24, 32, 48, FEAT))
        self.head = nn.Linear(FEAT, n_classes)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)   # 16
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)   # 8
        x = F.max_pool2d(F.relu(self.b3(self.c3(x))), 2)   # 4
        x = F.relu(self.b4(self.c4(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x):
        f = self.features(x)
        return self.head(f), f


@torch.no_grad()
def embed(model, x, bs=256):
    """x float [N, 3, 32, 32] in [-1, 1] -> (predicted classes [N], features float64 [N, 64])."""
    model.eval()
    preds, feats = [], []
    for i in range(0, len(x), bs):
        lg, f = model(x[i:i + bs])
        preds.append(lg.argmax(-1))
        feats.append(f.double())
    return torch.cat(preds).numpy(), torch.cat(feats).numpy()


def _sqrtm_psd(a):
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(f1, f2):
    """Frechet distance between Gaussians fitted to two feature sets [N, D] (float64):
    |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2). Uses the symmetric form, so no
    complex square roots (the same value as scipy.linalg.sqrtm(S1 @ S2) for PSD matrices)."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    r1 = _sqrtm_psd(s1)
    covmean = _sqrtm_psd(r1 @ s2 @ r1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def load_classifier(path):
    """The committed classifier (train/eval/classifier.safetensors) in eval mode."""
    from safetensors.torch import load_file

    m = ShapesNet()
    m.load_state_dict(load_file(str(path)), strict=True)
    return m.eval()


def quality(model, images, labels, ref_images):
    """The issue #12 (item 4) figures for one set of images: images float [N, 3, 32, 32] in
    [-1, 1] (generated, or reconstructions from the first k tokens) with the class each should
    show, against ref_images (held-out real images). Returns {accuracy, proxy_fid}. Compare
    proxy FIDs only at equal set sizes: the estimate is biased upwards at small n (the committed
    classifier: about 1.0 between two disjoint sets of 256 held-out real images, 0.46 between 512
    training and 512 held-out images)."""
    pred, f = embed(model, images)
    _, fr = embed(model, ref_images)
    labels = np.asarray(labels)
    return {"accuracy": float((pred == labels).mean()), "proxy_fid": frechet_distance(f, fr), "n": len(labels)}
