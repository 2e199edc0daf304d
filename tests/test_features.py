import math

import pytest
import torch

from binlearn.features import (
    FeatureConfig, active_frames, frame_energy_db, gcc_phat, input_features, ipd_band_freqs, lag_grid,
    normalise_targets, parse_kinds, peak_lag, stft, target_dim, target_features, target_slices,
)

CFG = FeatureConfig()
FS = CFG.fs


def _noise(n=16000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64)


def _delay(s, tau):
    """Circular fractional delay by tau seconds via the FFT (float64)."""
    n = s.shape[-1]
    f = torch.fft.rfftfreq(n, 1 / FS, dtype=torch.float64)
    return torch.fft.irfft(torch.fft.rfft(s) * torch.exp(-2j * math.pi * f * tau), n=n)


def _left_leads(tau, n=16000):
    s = _noise(n)
    return torch.stack([s, _delay(s, tau)])[None].float()  # right = delayed copy


@pytest.mark.parametrize("T", [16000, 16079, 100])
def test_shapes(T):
    x = torch.randn(3, 2, T)
    frames = T // CFG.hop + 1
    assert stft(x, CFG).shape == (3, 2, frames, CFG.n_bins)
    f = input_features(x, CFG)
    assert f.shape == (3, 5, frames, CFG.n_bins) and f.dtype == torch.float32
    assert gcc_phat(x, CFG).shape == (3, frames, CFG.n_lags)
    for kinds in [("gcc", "ipd", "ild"), ("ild", "gcc"), ("ipd",)]:
        t = target_features(x, CFG, kinds)
        assert t.shape == (3, frames, target_dim(CFG, kinds))
        assert torch.isfinite(t).all()
    assert target_dim(CFG, ("gcc", "ipd", "ild")) == CFG.n_lags + 2 * CFG.n_ipd_bins + CFG.n_ild_bands
    assert frame_energy_db(x, CFG).shape == (3, frames)
    assert active_frames(x, CFG).shape == (3, frames)


def test_lag_grid():
    g = lag_grid(CFG)
    assert g.shape == (33,)
    assert g[0].item() == pytest.approx(-1e-3) and g[-1].item() == pytest.approx(1e-3)


@pytest.mark.parametrize("tau", [0.5e-3, -0.5e-3, 0.23e-3])
def test_gcc_peak_at_delay(tau):
    x = _left_leads(tau)
    r = gcc_phat(x, CFG)[:, 3:-3]  # skip zero-padded edge frames
    step = 2 * CFG.max_lag_ms * 1e-3 / (CFG.n_lags - 1)
    coarse = lag_grid(CFG)[r.argmax(-1)]
    assert ((coarse - tau).abs() <= step / 2 + 1e-9).all()
    fine = peak_lag(r, CFG)
    assert ((fine - tau).abs() < 0.03e-3).all()
    assert r.abs().max() <= 1.0 + 1e-5


def test_gcc_swapped_ears_flip_sign():
    x = _left_leads(0.5e-3)
    lags = peak_lag(gcc_phat(x.flip(1), CFG)[:, 3:-3], CFG)
    assert ((lags + 0.5e-3).abs() < 0.03e-3).all()


def test_ipd_phase_slope():
    tau = 0.5e-3
    x = _left_leads(tau)
    f = input_features(x, CFG)[0, :, 3:-3]  # (5, frames, bins)
    fk = torch.arange(CFG.n_bins) * FS / CFG.n_fft
    ipd = torch.complex(f[2], f[3])
    # circular mean of IPD * exp(-j 2 pi f tau) ~ 1 when IPD = +2 pi f tau
    r = (ipd * torch.exp(-2j * math.pi * fk * tau).to(torch.complex64))[:, 1:].mean()
    assert r.real > 0.99 and abs(r.imag) < 0.01
    # phase slope on bins below ~940 Hz (|IPD| < pi there, so no unwrapping needed): fit through origin
    ang = torch.angle(ipd[:, 1:31].mean(0)).double()
    fr = fk[1:31].double()
    slope = (ang * fr).sum() / (fr * fr).sum()
    assert slope.item() == pytest.approx(2 * math.pi * tau, rel=0.01)
    # band IPD target follows the same law at the band mean frequency
    t = target_features(x, CFG, ("ipd",))[0, 3:-3]
    band = torch.complex(t[:, : CFG.n_ipd_bins], t[:, CFG.n_ipd_bins:])
    ref = torch.exp(-2j * math.pi * ipd_band_freqs(CFG) * tau).to(torch.complex64)
    assert (band * ref).mean().real > 0.98


def test_equal_ears_and_level_difference():
    s = _noise().float()
    x = torch.stack([s, s])[None]
    f = input_features(x, CFG)
    assert (f[:, 4] == 0).all() and (f[:, 3] == 0).all()
    assert torch.allclose(f[:, 2, 3:-3, 1:], torch.ones(1), atol=1e-5)
    t = target_features(x, CFG, ("gcc", "ipd", "ild"))
    sl = target_slices(CFG)
    assert (t[..., sl["ild"]] == 0).all()
    assert (t[..., sl["ipd"]][..., CFG.n_ipd_bins:] == 0).all()  # sin IPD
    assert (lag_grid(CFG)[t[..., sl["gcc"]].argmax(-1)] == 0).all()

    y = torch.stack([s, 0.5 * s])[None]
    raw = target_features(y, CFG, ("ild",), normalise=False)
    assert torch.allclose(raw, torch.full_like(raw, 20 * math.log10(2)), atol=1e-3)  # +6.02 dB
    assert torch.allclose(target_features(y, CFG, ("ild",)), raw / 20, atol=1e-4)
    assert torch.allclose(input_features(y, CFG)[:, 4, 3:-3, 1:], torch.tensor(6.0206 / 20), atol=1e-3)


def test_normalise_targets_matches():
    x = torch.randn(2, 2, 4000) * torch.tensor([1.0, 1e-3])[None, :, None]  # huge ILD -> clipped
    raw = target_features(x, CFG, normalise=False)
    norm = target_features(x, CFG)
    assert torch.allclose(normalise_targets(raw, CFG), norm, atol=1e-6)
    assert norm[..., target_slices(CFG)["ild"]].max() == pytest.approx(CFG.ild_clip_db / CFG.ild_scale_db)


def test_parse_kinds():
    assert parse_kinds("gcc+ipd+ild") == ("gcc", "ipd", "ild")
    assert parse_kinds("gcc,ipd") == ("gcc", "ipd")
    assert parse_kinds(" ILD ") == ("ild",)
    for bad in ["gcc+foo", "", "gcc+gcc"]:
        with pytest.raises(ValueError):
            parse_kinds(bad)


def test_active_frames():
    s = _noise(16000).float()
    s[8000:] *= 1e-3  # second half 60 dB down
    x = torch.stack([s, s])[None]
    a = active_frames(x, CFG)[0]
    assert a[5:45].all() and not a[55:95].any()
    assert not active_frames(torch.zeros(1, 2, 4000), CFG).any()


def test_float64_follows_input():
    x = torch.randn(1, 2, 2000, dtype=torch.float64)
    assert input_features(x, CFG).dtype == torch.float64
    assert target_features(x, CFG).dtype == torch.float64
