"""bench/bench_winograd.py times real Winograd convolutions: each variant it writes computes the
convolution it replaces (so its timings compare like with like)."""

import sys

import pytest
import torch

from tests.paths import REPO

sys.path.insert(0, str(REPO / "bench"))
import bench_winograd  # noqa: E402


@pytest.mark.parametrize("matrices", [bench_winograd.F4x4, bench_winograd.F2x2], ids=["F(4x4)", "F(2x2)"])
@pytest.mark.parametrize("transform", ["conv", "slice"])
@pytest.mark.parametrize("size", [7, 14, 16])  # whole tiles and a partial last tile
def test_a_winograd_module_gives_the_convolution_it_replaces(matrices, transform, size):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 12, 3, padding=1).eval()
    x = torch.randn(2, 8, size, size)

    with torch.no_grad():
        want = conv(x)
        got = bench_winograd.winograd_module(conv, matrices, transform)(x)

    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())


def test_the_onnx_export_keeps_partial_tiles(tmp_path):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1).eval()
    x = torch.randn(1, 4, 14, 14)  # 14 = 3 whole 4-pixel tiles and half of a fourth

    session = bench_winograd.session(bench_winograd.winograd_module(conv, bench_winograd.F4x4, "conv"), x, 1)
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])

    with torch.no_grad():
        assert torch.allclose(got, conv(x), atol=1e-4)
