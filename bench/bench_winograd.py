"""Would Winograd convolutions make the fast path's network faster? A measurement, not a feature.

ONNX Runtime already runs resnet18 at batch 1 near the fp32 peak of the cores (see
docs/performance.md), so the only way left to a faster fp32 network is less arithmetic. Winograd's
minimal filtering does a 3x3, stride-1 convolution with fewer multiplications: F(4x4, 3x3) needs
36 instead of 144 per 4x4 output tile (4x fewer), F(2x2, 3x3) 16 instead of 36 (2.25x fewer), at
the price of transforming every input and output tile. ONNX Runtime's CPU provider has no Winograd
kernel, so this script writes the algorithm as ONNX operators (the transforms as fixed-weight
grouped convolutions or as strided slices and small matmuls, the products as one batched matmul)
and times each of resnet18's 3x3 stride-1 layer shapes at 224 px, batch 1, against ONNX Runtime's
own convolution. It also prints each variant's largest error relative to the largest output.

Usage (from the repository root):
  .venv/bin/python bench/bench_winograd.py [--threads 2] [--runs 200]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): B^T, G, A^T.
F4x4 = (
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
)
F2x2 = (
    [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
    [[1, 1, 1, 0], [0, 1, -1, -1]],
)
# resnet18's 3x3 stride-1 convolutions at 224 px: (channels, spatial size, how many there are).
RESNET18_LAYERS = ((64, 56, 4), (128, 28, 3), (256, 14, 3), (512, 7, 3))


def winograd_module(conv, matrices, transform):
    """A module computing conv (3x3, stride 1, padding 1) with Winograd's F(m x m, 3x3).

    transform "conv": the input transform B^T d B as two fixed-weight grouped convolutions (rows,
    then columns), which also cut the overlapping tiles out; "slice": strided slices of the padded
    input, each followed by a small matmul with B^T.
    """
    import torch
    import torch.nn.functional as F

    bt, g, at = (torch.tensor(m, dtype=torch.float64) for m in matrices)
    n, m = bt.shape[0], at.shape[0]  # input tile n x n, output tile m x m

    class Winograd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            weight = conv.weight.detach().double()  # K, C, 3, 3
            k, c = weight.shape[:2]
            u = torch.einsum("ik,ockl,jl->ijoc", g, weight, g)  # the transformed filters, n n K C
            self.register_buffer("u", u.reshape(n * n, k, c).float().contiguous())
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros(k)
            self.register_buffer("bias", bias.float().reshape(1, k, 1, 1))
            self.register_buffer("bt", bt.float())
            self.register_buffer("at2", torch.kron(at, at).float())  # (m*m, n*n): A^T Y A in one matmul
            self.register_buffer("rows", bt.float().reshape(n, 1, n, 1).repeat(c, 1, 1, 1))
            self.register_buffer("cols", bt.float().reshape(n, 1, 1, n).repeat(c * n, 1, 1, 1))
            self.k = k

        def forward(self, x):
            batch, c, h, w = x.shape
            # (h + m - 1) // m, not -(-h // m): the exporter turns // into ONNX's Div, which truncates.
            th, tw = (h + m - 1) // m, (w + m - 1) // m
            # Pad 1 for the convolution, then up to whole tiles: th x tw tiles of n x n overlap by n - m.
            xp = F.pad(x, (1, m * tw + n - m - 1 - w, 1, m * th + n - m - 1 - h))
            if transform == "conv":
                v = F.conv2d(xp, self.rows, stride=(m, 1), groups=c)
                v = F.conv2d(v, self.cols, stride=(1, m), groups=c * n)  # batch, C*n*n, th, tw
                v = v.reshape(batch, c, n * n, th * tw).permute(2, 1, 0, 3)
            else:
                rows = torch.stack([xp[:, :, i:i + m * th:m, :] for i in range(n)])
                r = (self.bt @ rows.reshape(n, -1)).reshape(n, batch, c, th, -1)
                cols = torch.stack([r[..., j:j + m * tw:m] for j in range(n)])
                v = (self.bt @ cols.reshape(n, -1)).reshape(n, n, batch, c, th * tw).transpose(0, 1)
                v = v.reshape(n * n, batch, c, th * tw).permute(0, 2, 1, 3)
            prod = torch.matmul(self.u, v.reshape(n * n, c, batch * th * tw))  # n*n, K, batch*tiles
            y = (self.at2 @ prod.reshape(n * n, -1)).reshape(m, m, self.k, batch, th, tw)
            y = y.permute(3, 2, 4, 0, 5, 1).reshape(batch, self.k, m * th, m * tw)[:, :, :h, :w]
            return y + self.bias

    return Winograd().eval()


def session(module, x, threads):
    import onnxruntime as ort
    import torch

    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, (x,), buffer, input_names=["x"], output_names=["y"], opset_version=17,
                          dynamo=False)
    # The fast path's own session settings (classifier/fastpath.py).
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--runs", type=int, default=200, help="timed runs per variant and round (200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the variants taking turns (3)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # the exporter's notices

    import onnxruntime as ort
    import torch
    from bench_inference import cpu_flags, cpu_model, loadavg

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print("## Winograd convolutions as ONNX operators, against ONNX Runtime's convolution\n")
    print(f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; flags: {cpu_flags()}")
    print(f"- ONNX Runtime {ort.__version__}, {args.threads} threads; load average {loadavg()}")
    print("- batch 1; p50 ms per layer over the rounds; error: largest |difference| / largest |output|\n")
    variants = {
        "direct": lambda conv: conv,
        "F(4x4) conv transforms": lambda conv: winograd_module(conv, F4x4, "conv"),
        "F(4x4) slices": lambda conv: winograd_module(conv, F4x4, "slice"),
        "F(2x2) conv transforms": lambda conv: winograd_module(conv, F2x2, "conv"),
    }
    print("| layer (channels, size) x count | " + " | ".join(variants) + " |")
    print("| --- |" + " ---: |" * len(variants))
    totals = dict.fromkeys(variants, 0.0)
    for channels, size, count in RESNET18_LAYERS:
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).eval()
        x = torch.randn(1, channels, size, size)
        with torch.no_grad():
            want = conv(x)
        sessions, errors, times = {}, {}, {name: [] for name in variants}
        for name, build in variants.items():
            sessions[name] = session(build(conv), x, args.threads)
            got = torch.from_numpy(sessions[name].run(None, {"x": x.numpy()})[0])
            errors[name] = float((got - want).abs().max() / want.abs().max())
        feed = {"x": x.numpy()}
        for _ in range(args.rounds):
            for name, sess in sessions.items():
                for _ in range(10):
                    sess.run(None, feed)
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    sess.run(None, feed)
                    times[name].append(time.perf_counter() - t0)
        cells = []
        for name in variants:
            ms = statistics.median(times[name]) * 1e3
            totals[name] += ms * count
            cells.append(f"{ms:.2f} ({errors[name]:.0e})")
        print(f"| {channels}, {size}x{size} x {count} | " + " | ".join(cells) + " |", flush=True)
    print("| **all 13 layers** | " + " | ".join(f"**{totals[name]:.1f}**" for name in variants) + " |")


if __name__ == "__main__":
    main()
