import pytest
import torch
import torch.nn.functional as F

from binlearn.model import (
    DistillModel, DoAHead, DoAModel, Encoder, ModelConfig, azimuth_grid, azimuth_to_class, confidence,
    count_parameters, frames_to_azimuth, pool_utterance, soft_labels,
)

TINY = dict(n_bins=33, conv_channels=(8, 8, 8), freq_pool=(2, 2, 2), gru_hidden=16, embed_dim=16,
            head_hidden=16, dropout=0.0)


def test_default_sizes():
    cfg = ModelConfig()
    n = count_parameters(Encoder(cfg)) + count_parameters(DoAHead(cfg))
    assert 100_000 <= n <= 500_000
    z = Encoder(cfg).eval()(torch.randn(2, 5, 11, 257))
    assert z.shape == (2, 11, cfg.embed_dim)
    assert DoAModel(cfg).eval()(torch.randn(2, 5, 11, 257)).shape == (2, 11, 37)
    assert DistillModel(ModelConfig(target_dim=177)).eval()(torch.randn(2, 5, 11, 257)).shape == (2, 11, 177)
    with pytest.raises(ValueError):
        DistillModel(ModelConfig())  # target_dim unset


@pytest.mark.parametrize("causal", [True, False])
def test_causality(causal):
    torch.manual_seed(0)
    enc = Encoder(ModelConfig(causal=causal, **TINY))
    enc.train()
    enc(torch.randn(4, 5, 30, 33))  # give BatchNorm non-trivial running stats
    enc.eval()
    x = torch.randn(2, 5, 30, 33)
    t0 = 14
    y = x.clone()
    y[:, :, t0 + 1:] += torch.randn_like(y[:, :, t0 + 1:])
    with torch.no_grad():
        a, b = enc(x), enc(y)
    past_same = torch.allclose(a[:, : t0 + 1], b[:, : t0 + 1], atol=1e-6)
    assert past_same == causal
    assert not torch.allclose(a[:, t0 + 1:], b[:, t0 + 1:])


def test_grid_defaults():
    cfg = ModelConfig()
    g = azimuth_grid(cfg)
    assert cfg.n_classes == 37 and g.shape == (37,)
    assert g[0] == -90 and g[-1] == 90
    full = ModelConfig(full_circle=True)
    gf = azimuth_grid(full)
    assert full.n_classes == 72 and gf[0] == -180 and gf[-1] == 175
    assert azimuth_to_class(torch.tensor([-92.0, 3.0, 2.0, 90.0, 120.0]), cfg).tolist() == [0, 19, 18, 36, 36]
    assert azimuth_to_class(torch.tensor([178.0, -179.0, 181.0, 0.0]), full).tolist() == [0, 0, 0, 36]


def test_soft_labels_roundtrip():
    cfg = ModelConfig()
    az = torch.tensor([-89.1, -83.3, -41.7, 0.0, 2.4, 12.6, 57.1, 88.2])
    p = soft_labels(az, cfg)
    assert p.shape == (8, 37) and torch.allclose(p.sum(-1), torch.ones(8))
    est = frames_to_azimuth(torch.log(p), cfg)
    assert (est - az).abs().max() < 0.5
    # extra leading dims, logits with an arbitrary offset
    est2 = frames_to_azimuth(torch.log(p)[None].expand(3, -1, -1) + 7.0, cfg)
    assert est2.shape == (3, 8) and (est2 - az).abs().max() < 0.5


def test_full_circle_wrap():
    cfg = ModelConfig(full_circle=True)
    az = torch.tensor([178.7, -178.2, 179.9, -177.5, 91.3, -3.3])
    p = soft_labels(az, cfg)
    assert p.shape == (6, 72)
    est = frames_to_azimuth(torch.log(p), cfg)
    err = torch.remainder(est - az + 180, 360) - 180
    assert err.abs().max() < 0.5
    assert ((est >= -180) & (est < 180)).all()
    # the mass straddles the seam: confidence counts the wrapped neighbour
    c = confidence(p[:1], cfg)
    assert c.item() > 0.5


def test_pool_and_confidence():
    K = 37
    logits = torch.full((2, 5, K), -10.0)
    logits[:, :, 10] = 10.0
    logits[0, 0, 10], logits[0, 0, 30] = -10.0, 20.0  # one wrong frame
    mask = torch.ones(2, 5, dtype=torch.bool)
    lp = pool_utterance(logits, mask)
    assert lp.shape == (2, K) and torch.allclose(lp.exp().sum(-1), torch.ones(2))
    assert lp.argmax(-1).tolist() == [10, 10]
    mask[0, 0] = False
    assert pool_utterance(logits, mask)[0].exp()[10] > 0.99
    assert torch.allclose(pool_utterance(logits, torch.zeros(2, 5, dtype=torch.bool)), pool_utterance(logits))
    c = confidence(lp.exp())
    assert ((c >= 0) & (c <= 1)).all()
    assert confidence(torch.full((1, K), 1.0 / K)).item() == pytest.approx(0.0, abs=1e-6)
    assert confidence(F.one_hot(torch.tensor([0]), K).float()).item() == pytest.approx(1.0)


def _overfit(model, x, loss_fn, steps=150):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], min(losses[-10:])


def test_doa_overfits():
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    x = torch.randn(6, 5, 20, 33)
    y = torch.randint(0, cfg.n_classes, (6,))
    model = DoAModel(cfg)

    def loss_fn(logits):
        return F.cross_entropy(logits.reshape(-1, cfg.n_classes), y.repeat_interleave(20))

    first, last = _overfit(model, x, loss_fn)
    assert last < first / 10


def test_distill_overfits():
    torch.manual_seed(0)
    cfg = ModelConfig(target_dim=12, **TINY)
    x = torch.randn(6, 5, 20, 33)
    t = torch.randn(6, 20, 12).clamp(-1, 1)
    model = DistillModel(cfg)
    first, last = _overfit(model, x, lambda out: F.mse_loss(out, t), steps=200)
    assert last < first / 10


def test_edge_estimates_stay_in_range():
    cfg = ModelConfig()
    logits = torch.zeros(2, 37)
    logits[0, 36], logits[1, 0] = 10.0, 10.0  # one-hot at the edges
    est = frames_to_azimuth(logits, cfg)
    assert est.tolist() == [90.0, -90.0]
    # out-of-range truth clamps to the edge
    assert frames_to_azimuth(torch.log(soft_labels(torch.tensor([97.0]), cfg)), cfg).item() == pytest.approx(90.0)
