"""The default CNN ingrainer's operations on a CPU, one thread, the 356 images of a training step (100 carriers and
256 benign images): why a CPU runs each member's own operations instead of grouped ones (see
`hf_ingrain.keys.batched`). Milliseconds per call, best of 10 after 2 warm-up calls.

    python docs/fast_keys/bench_ops.py
"""

import time

import torch
import torch.nn.functional as F


def bench(function, repeats=10):
    function()
    function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main():
    torch.set_num_threads(1)
    images = 356
    for layout, memory_format in (("NCHW", torch.contiguous_format), ("channels-last", torch.channels_last)):
        pixels = torch.rand(images, 1, 28, 28).contiguous(memory_format=memory_format)
        hidden = torch.rand(images, 16, 14, 14).contiguous(memory_format=memory_format)
        conv1_out = torch.randn(images, 16, 28, 28).contiguous(memory_format=memory_format)
        weight1, weight2 = torch.randn(16, 1, 3, 3), torch.randn(32, 16, 3, 3).contiguous(memory_format=memory_format)
        print(f"{layout}: conv1 {bench(lambda: F.conv2d(pixels, weight1, padding=1)):.2f} ms, "
              f"conv2 {bench(lambda: F.conv2d(hidden, weight2, padding=1)):.2f} ms, "
              f"max pool after conv1 {bench(lambda: F.max_pool2d(conv1_out, 2)):.2f} ms")
        for members in (4, 16):
            grouped = torch.rand(images, members * 16, 14, 14).contiguous(memory_format=memory_format)
            weights = torch.randn(members * 32, 16, 3, 3).contiguous(memory_format=memory_format)
            per_member = bench(lambda: F.conv2d(grouped, weights, padding=1, groups=members), 3) / members
            print(f"{layout}: conv2 grouped over {members} members: {per_member:.2f} ms per member")
    patches = torch.rand(images * 28 * 28, 9)
    print(f"conv1 as a (positions x 9) @ (9 x 16) product: {bench(lambda: patches @ weight1.view(16, 9).t()):.2f} ms")


if __name__ == "__main__":
    main()
