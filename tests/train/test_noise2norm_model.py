"""Noise-to-norm: noise blending, the M-net, the anomaly model's determinism, training noise, lambda = 0."""
from __future__ import annotations

import pytest
import torch

from train.errors import ConfigError
from train.methods import get_method
from train.nets.mnet import MNet
from train.summary import count_gmacs, count_params
from train.ops.noise import NoiseBlend


def _method():
    return get_method("noise2norm")


def _model(c=8, size=(64, 64), seed=0, **options):
    m = _method()
    torch.manual_seed(seed)
    return m.build_model(c, size, m.options(options)).eval()


def test_registered_with_defaults_and_extra_inputs():
    m = _method()
    assert m.name == "noise2norm"
    assert m.defaults["lam"] == 0.3 and m.defaults["noise_seed"] == 0
    assert m.train_defaults["betas"] == (0.5, 0.999)
    (name, extra), = m.extra_inputs((64, 96)).items()
    assert name == "noise" and extra.shape == (3, 64, 96) and "noise" in extra.meaning
    with pytest.raises(ConfigError, match="no option"):
        m.options({"lambda": 0.2})


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (96, 32)])
def test_shapes_square_and_non_square(size):
    model = _model(size=size)
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        amap, score = model(x)
        recon = model.reconstruct(x)
    assert amap.shape == (2, 1, *size) and score.shape == (2,)
    assert recon.shape == (2, 3, *size)
    assert torch.isfinite(amap).all()
    assert torch.allclose(score, amap.amax(dim=(1, 2, 3)))


def test_mnet_sizes_and_counts():
    net = MNet(8)
    with torch.no_grad():
        assert net(torch.rand(1, 3, 32, 48)).shape == (1, 3, 32, 48)
    p8, p16 = count_params(MNet(8)), count_params(MNet(16))
    assert 3.5 < p16 / p8 < 4.1  # widths scale with c: convs ~ c^2
    macs = count_gmacs(MNet(8), (64, 64))
    # Doubling the side quadruples the work (all but the attention's 1x1 convs on pooled vectors).
    assert count_gmacs(MNet(8), (128, 128)) == pytest.approx(4 * macs, rel=1e-3)
    print(f"M-net c=8 params {p8}, c=16 params {p16}, c=8 MACs at 64x64 {macs}")


def test_eval_is_deterministic_and_reproducible_across_builds():
    a = _model(seed=0)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        m1, s1 = a(x)
        m2, s2 = a(x)
    assert torch.equal(m1, m2) and torch.equal(s1, s2)
    torch.manual_seed(123)  # the global RNG must not matter for the fixed field
    b = _model(seed=0)
    with torch.no_grad():
        m3, s3 = b(x)
    assert torch.equal(m1, m3) and torch.equal(s1, s3)
    # The field is not in the weights: a fresh model with loaded weights scores the same.
    assert not any("noise" in k for k in a.state_dict())
    c = _model(seed=7)
    c.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert torch.equal(c(x)[0], m1)
    # Another noise seed gives another field.
    d = _model(seed=0, noise_seed=1)
    assert not torch.equal(d.blend.eval_noise, a.blend.eval_noise)


def test_batch_position_does_not_change_a_frame_score():
    model = _model()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        _, s_batch = model(x)
        _, s_one = model(x[1:2])
    assert torch.allclose(s_batch[1], s_one[0], atol=1e-6)


def test_noise_statistics_and_explicit_noise_input():
    blend = NoiseBlend((64, 64), lam=0.3, seed=0).eval()
    field = blend.eval_noise
    assert field.shape == (1, 3, 64, 64)
    assert abs(float(field.mean())) < 0.05 and abs(float(field.std()) - 1) < 0.05
    img = torch.rand(2, 3, 64, 64)
    noise = torch.randn(2, 3, 64, 64)
    expected = 0.7 * (img - 0.5) / 0.5 + 0.3 * (0.5 + 0.5 * noise)  # Eq. 1, eps ~ N(0.5, 0.5)
    assert torch.allclose(blend(img, noise), expected, atol=1e-6)
    assert torch.allclose(blend(img), 0.7 * (2 * img - 1) + 0.3 * (0.5 + 0.5 * field), atol=1e-6)
    with pytest.raises(ConfigError, match="differs from the model"):
        blend(torch.rand(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="lam"):
        NoiseBlend((64, 64), lam=1.0)


def test_training_noise_is_fresh_each_step_and_seeded():
    m = _method()
    model = _model()
    model.train()
    clean = torch.rand(2, 3, 64, 64)
    g = torch.Generator().manual_seed(0)
    n1 = model.blend(clean, generator=g)
    n2 = model.blend(clean, generator=g)
    assert not torch.allclose(n1, n2)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    run = m.start_run(m.options(), (64, 64))
    l1 = run.loss(model, clean, g1, 0).detach()
    l1b = run.loss(model, clean, g1, 1).detach()
    l2 = run.loss(model, clean, g2, 0).detach()
    assert float(l1) == float(l2)  # same generator state -> same loss
    assert float(l1) != float(l1b)  # next step -> new noise
    # Even with the module in eval mode, the loss draws fresh noise (not the fixed field).
    model.eval()
    l3 = run.loss(model, clean, torch.Generator().manual_seed(5), 0)
    assert float(l3.detach()) == pytest.approx(float(l1), abs=1e-6)
    l3.backward()
    assert all(p.grad is not None for p in model.net.parameters())


def test_lambda_zero_is_the_clean_path():
    model = _model(lam=0.0)
    assert model.blend.eval_noise is None
    img = torch.rand(2, 3, 64, 64)
    assert torch.equal(model.blend(img), (img - 0.5) / 0.5)
    assert torch.equal(model.blend(img, torch.randn(2, 3, 64, 64)), (img - 0.5) / 0.5)
    model.train()
    assert torch.equal(model.blend(img, generator=torch.Generator().manual_seed(0)), (img - 0.5) / 0.5)
    model.eval()
    with torch.no_grad():
        amap, score = model(img)
    assert amap.shape == (2, 1, 64, 64) and score.shape == (2,)


def test_optimizer_and_scheduler_follow_the_paper_form():
    m = _method()
    model = _model()
    run = m.start_run(m.options(), (64, 64))
    opt = run.optimizer(model, 2e-4)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["betas"] == (0.5, 0.999)
    sched = run.scheduler(opt, 10)
    lrs = []
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] < 2e-4 and all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(1e-6)
