"""The Fashion-ViT benchmark's model and recipe in PyTorch, for comparison.

The tasks issue's reference: ViT of E 64, 4 pre-norm layers, 4 heads of 16,
FFN 128, GELU, patch 4 (49 patches + class token), softmax attention; AdamW
lr 1e-3 weight decay 0.05, one-cycle schedule (10 % warm-up, cosine), batch
128, label smoothing 0.1, 5 epochs on all 60,000 training images of Debian's
Fashion-MNIST; test accuracy on the 10,000 test images. Prints the wall time
of each epoch and the test accuracy.

By default every ingredient the recipe leaves open is PyTorch's default.
--ini sets the two that etc/fashion-vit.ini sets otherwise (AdamW beta2 0.98
and clipping at norm 1): the same recipe as etnas's benchmark. The other
switches turn single ingredients into etnas's defaults (what [train] does
without fashion-vit.ini's options), one difference at a time:
  --init trunc      every weight N(0, 0.02) truncated at 2 sd (etnas's
                    default) instead of torch's layer defaults
  --sched linear    linear warm-up from 0 to lr, cosine to 0, fixed betas
                    (etnas's schedule) instead of torch's OneCycleLR (warm-up
                    from lr/25, to lr/25e4, beta1 cycled 0.95 -> 0.85 -> 0.95)
  --decay weights   weight decay on matrices only (etnas) instead of on every
                    parameter (torch's AdamW given model.parameters())
  --gelu tanh       the tanh approximation (etnas) instead of erf
  --beta2 0.98      AdamW beta2 (etnas's default 0.98; torch's 0.999)
  --clip 1          clip gradients to this global norm (etnas's default 1;
                    torch's recipe none: 0)
  --etnas           all of the above at etnas's defaults

Needs Debian's python3-torch (run with /usr/bin/python3):
  /usr/bin/python3 bench/fashion_vit_torch.py [--threads 2] [--seed 1] ...
"""
import argparse
import gzip
import math
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
ap.add_argument("--init", choices=["torch", "trunc"], default="torch")
ap.add_argument("--sched", choices=["onecycle", "linear"], default="onecycle")
ap.add_argument("--decay", choices=["all", "weights"], default="all")
ap.add_argument("--gelu", choices=["erf", "tanh"], default="erf")
ap.add_argument("--beta2", type=float, default=0.999)
ap.add_argument("--clip", type=float, default=0.0)
ap.add_argument("--etnas", action="store_true")
ap.add_argument("--ini", action="store_true")
args = ap.parse_args()
if args.ini:
    args.beta2, args.clip = 0.98, 1.0
if args.etnas:
    args.init, args.sched, args.decay, args.gelu, args.beta2, args.clip = \
        "trunc", "linear", "weights", "tanh", 0.98, 1.0
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)

E, L, H, FF, P, C, B = 64, 4, 4, 128, 4, 10, 128


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n = struct.unpack(">II", raw[:8])
    dims = [n] + list(struct.unpack(">" + "I" * ((magic & 255) - 1), raw[8:4 * (magic & 255) + 4]))
    data = torch.frombuffer(bytearray(raw[4 * (magic & 255) + 4:]), dtype=torch.uint8)
    return data.reshape(dims)


def images(name):
    x = idx(f"{args.data}/{name}-images-idx3-ubyte.gz").float() / 255.0
    y = idx(f"{args.data}/{name}-labels-idx1-ubyte.gz").long()
    return x.unsqueeze(1), y


xtr, ytr = images("train")
xte, yte = images("t10k")
mean, std = xtr.mean().item(), xtr.std().item()
xtr, xte = (xtr - mean) / std, (xte - mean) / std


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(E)
        self.attn = nn.MultiheadAttention(E, H, batch_first=True)
        self.ln2 = nn.LayerNorm(E)
        self.fc1 = nn.Linear(E, FF)
        self.fc2 = nn.Linear(FF, E)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh" if args.gelu == "tanh" else "none"))


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, E, P, P)
        n = (28 // P) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, E))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, E))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.blocks = nn.Sequential(*[Block() for _ in range(L)])
        self.ln = nn.LayerNorm(E)
        self.head = nn.Linear(E, C)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.ln(self.blocks(x))[:, 0])


model = ViT()
if args.init == "trunc":
    for name, p in model.named_parameters():
        if p.dim() > 1 and name not in ("cls", "pos"):
            nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
# etnas decays the matrices: not biases, LayerNorm, the class token or positions
decayed = {n for n, p in model.named_parameters()
           if args.decay == "all" or (p.dim() > 1 and n not in ("cls", "pos"))}
decay = [p for n, p in model.named_parameters() if n in decayed]
rest = [p for n, p in model.named_parameters() if n not in decayed]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                         {"params": rest, "weight_decay": 0.0}], lr=1e-3,
                        betas=(0.9, args.beta2))
steps_per_epoch = math.ceil(len(xtr) / B)
total = steps_per_epoch * args.epochs
if args.sched == "onecycle":
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=total, pct_start=0.1)
else:
    warm = round(0.1 * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else
        0.5 * (1 + math.cos(math.pi * (s + 1 - warm) / (total - warm))))
print(f"torch {torch.__version__}, {args.threads} threads, seed {args.seed}, {total} updates,"
      f" init {args.init}, schedule {args.sched}, decay {args.decay}, gelu {args.gelu},"
      f" beta2 {args.beta2}, clip {args.clip}", flush=True)
for epoch in range(args.epochs):
    model.train()
    t0 = time.time()
    order = torch.randperm(len(xtr))
    loss_sum = 0.0
    for i in range(steps_per_epoch):
        b = order[i * B:(i + 1) * B]
        loss = F.cross_entropy(model(xtr[b]), ytr[b], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        sched.step()
        loss_sum += loss.item()
    print(f"epoch {epoch + 1}: train loss {loss_sum / steps_per_epoch:.4f}, {time.time() - t0:.1f} s",
          flush=True)
model.eval()
with torch.no_grad():
    right = sum((model(xte[i:i + 500]).argmax(1) == yte[i:i + 500]).sum().item()
                for i in range(0, len(xte), 500))
print(f"test accuracy {100 * right / len(xte):.2f} %")
