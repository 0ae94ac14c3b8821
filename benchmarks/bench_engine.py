"""Training-input throughput: batched tensor augmentation vs a per-image PIL DataLoader.

Side by side in one process, on the real CIFAR-10 training set:

1. the input pipeline alone (random crop with 4-pixel padding + flip + normalise) for
   one epoch: this project's ``TensorImageSet.batches`` against torchvision's usual
   ``DataLoader`` over PIL images with ``RandomCrop / RandomHorizontalFlip / ToTensor /
   Normalize`` (0 and 2 workers);
2. PreActResNet18 training steps (batch 128, SGD) fed by each pipeline, images/s.

Usage::

    python ../shared/tools/make_cifar10.py /tmp/cifar
    python benchmarks/bench_engine.py --data /tmp/cifar [--steps 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="folder holding cifar-10-batches-py")
    ap.add_argument("--steps", type=int, default=8, help="timed training steps per pipeline")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import torchvision.transforms as T
    from PIL import Image

    from deep_core.datasets import DataConfig, load_dataset
    from deep_core.nets import build_model

    ds = load_dataset(DataConfig(dataset="CIFAR10", data_path=args.data, noise_type="clean"))
    images = ds.train.images  # (50000, 3, 32, 32) uint8
    labels = torch.as_tensor(ds.labels)
    n, bs = images.shape[0], args.batch_size

    class PILCifar(torch.utils.data.Dataset):
        def __init__(self):
            self.hwc = images.permute(0, 2, 3, 1).numpy()
            self.tf = T.Compose(
                [
                    T.RandomCrop(32, padding=4),
                    T.RandomHorizontalFlip(),
                    T.ToTensor(),
                    T.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
                ]
            )

        def __len__(self):
            return n

        def __getitem__(self, i):
            return self.tf(Image.fromarray(self.hwc[i])), labels[i]

    def tensor_batches(epoch):
        for b in ds.train.batches(
            batch_size=bs, views=("weak",), shuffle=True, seed=0, epoch=epoch
        ):
            yield b.views[0], labels[b.positions]

    def pil_batches(workers):
        def gen(epoch):
            g = torch.Generator().manual_seed(epoch)
            loader = torch.utils.data.DataLoader(
                PILCifar(),
                batch_size=bs,
                shuffle=True,
                generator=g,
                num_workers=workers,
                persistent_workers=False,
            )
            yield from loader

        return gen

    pipelines = {
        "tensor (this engine)": tensor_batches,
        "PIL DataLoader, 0 workers": pil_batches(0),
        "PIL DataLoader, 2 workers": pil_batches(2),
    }

    print(
        f"# torch {torch.__version__}, {args.threads} threads, batch {bs}, CIFAR-10 train (n={n})"
    )
    print("## input pipeline alone, one epoch")
    rates = {}
    for name, gen in pipelines.items():
        t = time.perf_counter()
        count = sum(x.shape[0] for x, _ in gen(0))
        rates[name] = count / (time.perf_counter() - t)
        print(f"{name:28s} {rates[name]:10.0f} images/s")
    base = rates["tensor (this engine)"]
    for name in list(pipelines)[1:]:
        print(f"ratio tensor / {name}: {base / rates[name]:.1f}x")

    print(
        f"## PreActResNet18 training, {args.steps} timed steps after 2 warm-up steps, channels_last"
    )
    train_rates = {}
    for name, gen in pipelines.items():
        net = build_model("PreActResNet18", num_classes=10, image_shape=(3, 32, 32), seed=0)
        net = net.to(memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(
            net.parameters(), 0.02, momentum=0.9, weight_decay=5e-4, nesterov=True
        )
        it = gen(1)
        for step in range(args.steps + 2):
            if step == 2:
                t = time.perf_counter()
            x, y = next(it)
            loss = F.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        train_rates[name] = args.steps * bs / (time.perf_counter() - t)
        print(
            f"{name:28s} {train_rates[name]:10.1f} images/s "
            f"({n / train_rates[name] / 60:.1f} min per epoch)"
        )
    base = train_rates["tensor (this engine)"]
    for name in list(pipelines)[1:]:
        print(f"ratio tensor / {name}: {base / train_rates[name]:.2f}x")


if __name__ == "__main__":
    main()
