"""The Fashion-ViT benchmark's model and recipe in PyTorch, for comparison.

The tasks issue's reference: ViT of E 64, 4 pre-norm layers, 4 heads of 16,
FFN 128, GELU, patch 4 (49 patches + class token), softmax attention; AdamW
lr 1e-3 weight decay 0.05, one-cycle schedule (10 % warm-up, cosine), batch
128, label smoothing 0.1, 5 epochs on all 60,000 training images of Debian's
Fashion-MNIST; test accuracy on the 10,000 test images. Prints the wall time
of each epoch and the test accuracy.

By default every ingredient the recipe leaves open is PyTorch's default.
--ini sets the three that etc/fashion-vit.ini sets otherwise (AdamW beta2
0.98, clipping at norm 1, positions and class token N(0, 0.1^2)): the same
recipe as etnas's benchmark. The other
switches turn single ingredients into etnas's defaults (what [train] does
without fashion-vit.ini's options), one difference at a time:
  --init trunc      every weight N(0, 0.02) truncated at 2 sd (etnas's
                    default) instead of torch's layer defaults
  --init trunc-qkv  the same but the attention's in_proj keeps torch's
                    Xavier draw (etnas's init = normal, qkv_init = xavier)
  --init numpy      torch's layer defaults (the distributions of --init
                    torch) drawn from numpy's PCG64 seeded with --seed: a
                    third generator beside torch's and etnas's
  --sched linear    linear warm-up from 0 to lr, cosine to 0, fixed betas
                    (etnas's schedule) instead of torch's OneCycleLR (warm-up
                    from lr/25, to lr/25e4, beta1 cycled 0.95 -> 0.85 -> 0.95)
  --decay weights   weight decay on matrices only (etnas) instead of on every
                    parameter (torch's AdamW given model.parameters())
  --gelu tanh       the tanh approximation (etnas) instead of erf
  --beta2 0.98      AdamW beta2 (etnas's default 0.98; torch's 0.999)
  --clip 1          clip gradients to this global norm (etnas's default 1;
                    torch's recipe none: 0)
  --pos-std 0.02    std of the learned positions and class token at init
                    (etnas's default and timm's ViT 0.02; the ini's 0.1)
  --etnas           all of the above at etnas's defaults
--from-etnas CKPT starts from the parameters of an etnas checkpoint of this
model (e.g. one update at lr 1e-30, as the parity check's init run, holds
etnas's initial draw) instead of drawing them: with this script's data order,
it separates the initial draw from the rest of training (the data order
of a --seed is that of the run drawing its own weights with the same --init:
the draw is made, then overwritten).
--to-etnas TEMPLATE OUT writes this script's initial draw (--seed, --init) as
an etnas checkpoint OUT, taking the header from TEMPLATE (an etnas checkpoint
of this model), for etnas's [train] init_from, and stops.
--permute-etnas CKPT OUT writes the parameters of the etnas checkpoint CKPT
with each tensor's values put in a random order (numpy's PCG64 seeded with
1000 + --seed) as OUT, and stops: the same values without their order.
--parity DIR checks etnas against this script update by update instead of
training (bench/fashion_vit_parity.sh writes DIR and calls it).

Needs Debian's python3-torch (run with /usr/bin/python3):
  /usr/bin/python3 bench/fashion_vit_torch.py [--threads 2] [--seed 1] ...
"""
import argparse
import gzip
import math
import struct
import sys
import time
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
ap.add_argument("--init", choices=["torch", "trunc", "trunc-qkv", "numpy"], default="torch")
swap = ap.add_mutually_exclusive_group()
swap.add_argument("--from-etnas", metavar="CKPT")
swap.add_argument("--to-etnas", nargs=2, metavar=("TEMPLATE", "OUT"))
swap.add_argument("--permute-etnas", nargs=2, metavar=("CKPT", "OUT"))
ap.add_argument("--sched", choices=["onecycle", "linear"], default="onecycle")
ap.add_argument("--decay", choices=["all", "weights"], default="all")
ap.add_argument("--gelu", choices=["erf", "tanh"], default="erf")
ap.add_argument("--beta2", type=float, default=0.999)
ap.add_argument("--clip", type=float, default=0.0)
ap.add_argument("--pos-std", type=float, default=0.02)
ap.add_argument("--etnas", action="store_true")
ap.add_argument("--ini", action="store_true")
ap.add_argument("--parity", metavar="DIR")
ap.add_argument("--parity-images", type=int, default=1000)
args = ap.parse_args()
if not args.pos_std > 0:
    ap.error("--pos-std takes a standard deviation > 0")
if args.ini:
    args.beta2, args.clip, args.pos_std = 0.98, 1.0, 0.1
if args.etnas:
    args.init, args.sched, args.decay, args.gelu, args.beta2, args.clip, args.pos_std = \
        "trunc", "linear", "weights", "tanh", 0.98, 1.0, 0.02
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
        nn.init.trunc_normal_(self.pos, std=args.pos_std)
        nn.init.trunc_normal_(self.cls, std=args.pos_std)
        self.blocks = nn.Sequential(*[Block() for _ in range(L)])
        self.ln = nn.LayerNorm(E)
        self.head = nn.Linear(E, C)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.ln(self.blocks(x))[:, 0])


def optimizer(model, total):
    """AdamW and the schedule of the recipe for `total` updates."""
    # etnas decays the matrices: not biases, LayerNorm, the class token or positions
    decayed = {n for n, p in model.named_parameters()
               if args.decay == "all" or (p.dim() > 1 and n not in ("cls", "pos"))}
    decay = [p for n, p in model.named_parameters() if n in decayed]
    rest = [p for n, p in model.named_parameters() if n not in decayed]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": rest, "weight_decay": 0.0}], lr=1e-3,
                            betas=(0.9, args.beta2))
    if args.sched == "onecycle":
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=total,
                                                        pct_start=0.1)
    warm = round(0.1 * total)
    return opt, torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else
        0.5 * (1 + math.cos(math.pi * (s + 1 - warm) / (total - warm))))


def update(model, opt, sched, x, y):
    """One update on the batch (x, y); returns its loss."""
    loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if args.clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
    opt.step()
    sched.step()
    return loss.item()


def etnas_order(model):
    """The parameters in the order and layout of etnas's tensor table."""
    ps = [("embed.weight", model.patch.weight), ("embed.bias", model.patch.bias),
          ("cls", model.cls), ("pos", model.pos)]
    for b in model.blocks:
        ps += [("ln1.gamma", b.ln1.weight), ("ln1.beta", b.ln1.bias),
               ("qkv.weight", b.attn.in_proj_weight), ("qkv.bias", b.attn.in_proj_bias),
               ("proj.weight", b.attn.out_proj.weight), ("proj.bias", b.attn.out_proj.bias),
               ("ln2.gamma", b.ln2.weight), ("ln2.beta", b.ln2.bias),
               ("fc1.weight", b.fc1.weight), ("fc1.bias", b.fc1.bias),
               ("fc2.weight", b.fc2.weight), ("fc2.bias", b.fc2.bias)]
    return ps + [("lnf.gamma", model.ln.weight), ("lnf.beta", model.ln.bias),
                 ("head.weight", model.head.weight), ("head.bias", model.head.bias)]


def checkpoint(path):
    """Step, tensor table (name, rows, cols), parameters and AdamW's first
    moments of an etnas checkpoint (src/checkpoint.c's layout)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        sys.exit(f"{path}: {e.strerror}")
    if raw[:8] != b"ETNASCKP":
        sys.exit(f"{path}: not an etnas checkpoint (no ETNASCKP magic at offset 0)")
    o = 8
    try:
        version, has_opt, step, _, _, n, nt, slen, alen = struct.unpack_from("<IIQQQQIII", raw, 8)
        if version != 1:
            sys.exit(f"{path}: checkpoint format version {version}, this script reads 1")
        o = 8 + 52 + slen + alen
        table = []
        for _ in range(nt):
            (nl,) = struct.unpack_from("<I", raw, o)
            rows, cols = struct.unpack_from("<II", raw, o + 4 + nl)
            table.append((raw[o + 4:o + 4 + nl].decode(), rows, cols))
            o += 4 + nl + 16
        o += 4
    except (struct.error, UnicodeDecodeError):
        sys.exit(f"{path}: truncated or corrupt header (tensor table past offset {o})")
    end = o + (8 if has_opt else 4) * n
    if len(raw) < end:
        sys.exit(f"{path}: truncated at offset {len(raw)}: {end} bytes expected")
    floats = torch.frombuffer(bytearray(raw[o:end]), dtype=torch.float32)
    return step, table, floats[:n], floats[n:] if has_opt else None


def write_checkpoint(template, out, model):
    """The model's parameters as an etnas checkpoint (weights only, step 0)
    with the space text and RNG state of `template`, CRCs as src/checkpoint.c."""
    _, table, _, _ = checkpoint(template)  # refuses a file it cannot read
    with open(template, "rb") as f:
        raw = f.read()
    version, _, _, key, counter, n, nt, slen, alen = struct.unpack_from("<IIQQQQIII", raw, 8)
    ps = etnas_order(model)
    if [(name, r * c) for name, r, c in table] != [(name, p.numel()) for name, p in ps]:
        sys.exit(f"{template}: the checkpoint's tensors are not this model's")
    head = raw[:8] + struct.pack("<IIQQQQIII", version, 0, 0, key, counter, n, nt, slen, alen)
    head += raw[60:60 + slen + alen]
    body = b""
    for (name, rows, cols), (_, p) in zip(table, ps):
        data = p.detach().reshape(-1).contiguous().numpy().astype("<f4").tobytes()
        head += struct.pack("<I", len(name.encode())) + name.encode() + \
            struct.pack("<IIII", rows, cols, zlib.crc32(data), 0)
        body += data
    with open(out, "wb") as f:
        f.write(head + struct.pack("<I", zlib.crc32(head)) + body)


def parity(folder, x, y):
    """etnas against this script, update by update, on one full batch of the
    first len(x) training images: the gradient at etnas's initial weights, then
    the losses and the weights of etnas's run of the recipe. Written by
    bench/fashion_vit_parity.sh; returns the exit status."""
    mean, std = x.mean().item(), x.std(unbiased=False).item()  # etnas: population sd
    x = (x - mean) / std
    _, table, p0, m1 = checkpoint(f"{folder}/init/supernet.ckpt")
    k, _, pk, _ = checkpoint(f"{folder}/steps/supernet.ckpt")
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in open(f"{folder}/steps.log")
              if "supernet: step" in line]
    model = ViT()
    ps = etnas_order(model)
    if [(n, r * c) for n, r, c in table] != [(n, p.numel()) for n, p in ps]:
        print("parity: the checkpoint's tensors are not this model's")
        return 1

    def load(flat):
        o = 0
        with torch.no_grad():
            for _, p in ps:
                p.copy_(flat[o:o + p.numel()].reshape(p.shape))
                o += p.numel()

    def flat(ts):
        return torch.cat([t.detach().reshape(-1) for t in ts])

    load(p0)
    loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
    loss.backward()
    g = flat([p.grad for _, p in ps])
    ge = m1 / (1 - 0.9)  # the init run's first moment after one update: (1 - beta1) g
    gerr = ((ge - g).abs().max() / g.abs().max()).item()
    print(f"gradient at etnas's initial weights: max |etnas - torch| / max |torch| = {gerr:.1e}"
          f" (tolerance 1e-5); loss torch {loss.item():.6f}, etnas {losses[0]:.4f}")
    model.zero_grad(set_to_none=True)
    load(p0)
    opt, sched = optimizer(model, k)
    lerr = 0.0
    for s in range(k):
        lt = update(model, opt, sched, x, y)
        lerr = max(lerr, abs(lt - losses[s]))
        if s in (0, 1, 2, k // 2, k - 1):
            print(f"update {s + 1}: loss torch {lt:.4f}, etnas {losses[s]:.4f}")
    pt = flat([p for _, p in ps])
    perr = (pk - pt).abs().max().item()
    moved = (pt - p0).abs().max().item()
    print(f"after {k} updates: max loss difference {lerr:.1e} (tolerance 2e-4, etnas prints 4"
          f" decimals); max |weight etnas - torch| {perr:.1e} (tolerance 5e-4; the weights"
          f" moved up to {moved:.1e})")
    ok = gerr <= 1e-5 and lerr <= 2e-4 and perr <= 5e-4
    print("parity: " + ("etnas and PyTorch agree" if ok else "MISMATCH"))
    return 0 if ok else 1


def numpy_draw(model, seed):
    """torch's default initialisation of this model drawn from numpy's PCG64."""
    import numpy as np
    g = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in etnas_order(model):  # a bias follows its weight
            n = p.numel()
            if name.endswith("gamma"):
                v = np.ones(n)
            elif name.endswith("beta") or name in ("qkv.bias", "proj.bias"):
                v = np.zeros(n)  # nn.MultiheadAttention's biases
            elif name in ("cls", "pos"):
                v = args.pos_std * g.standard_normal(n)  # trunc_normal_'s cut at +-2: >= 20 sd
            elif name == "qkv.weight":
                a = math.sqrt(6 / sum(p.shape))  # Xavier
                v = g.uniform(-a, a, n)
            else:  # nn.Linear / nn.Conv2d: U(+-1/sqrt(fan_in)), weight and bias
                if name.endswith("weight"):
                    a = 1 / math.sqrt(p[0].numel())
                v = g.uniform(-a, a, n)
            p.copy_(torch.from_numpy(v.astype("float32")).reshape(p.shape))


def load_etnas(model, path):
    """Sets the model's parameters to those of etnas checkpoint path."""
    _, table, p0, _ = checkpoint(path)
    ps = etnas_order(model)
    if [(n, r * c) for n, r, c in table] != [(n, p.numel()) for n, p in ps]:
        sys.exit(f"{path}: the checkpoint's tensors are not this model's")
    with torch.no_grad():
        o = 0
        for _, p in ps:
            p.copy_(p0[o:o + p.numel()].reshape(p.shape))
            o += p.numel()


def permute_etnas(src, out, seed):
    """The parameters of etnas checkpoint src, each tensor's values in a
    random order, written as etnas checkpoint out."""
    import numpy as np
    g = np.random.default_rng(1000 + seed)
    model = ViT()
    load_etnas(model, src)
    with torch.no_grad():
        for _, p in etnas_order(model):
            v = p.detach().reshape(-1).clone()
            p.copy_(v[torch.from_numpy(g.permutation(p.numel()))].reshape(p.shape))
    write_checkpoint(src, out, model)


# the draw first: loading the images consumes no random numbers
model = ViT()
if args.permute_etnas:
    permute_etnas(args.permute_etnas[0], args.permute_etnas[1], args.seed)
    sys.exit(0)
if args.init == "numpy":
    numpy_draw(model, args.seed)
elif args.init != "torch":
    for name, p in model.named_parameters():
        if args.init == "trunc-qkv" and name.endswith("in_proj_weight"):
            continue
        if p.dim() > 1 and name not in ("cls", "pos"):
            nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
if args.to_etnas:
    write_checkpoint(args.to_etnas[0], args.to_etnas[1], model)
    sys.exit(0)
xtr, ytr = images("train")
if args.parity:
    n = args.parity_images
    sys.exit(parity(args.parity, xtr[:n], ytr[:n]))
xte, yte = images("t10k")
mean, std = xtr.mean().item(), xtr.std().item()
xtr, xte = (xtr - mean) / std, (xte - mean) / std
if args.from_etnas:
    load_etnas(model, args.from_etnas)
steps_per_epoch = math.ceil(len(xtr) / B)
total = steps_per_epoch * args.epochs
opt, sched = optimizer(model, max(total, 1))  # --epochs 0: test the initial weights
print(f"torch {torch.__version__}, {args.threads} threads, seed {args.seed}, {total} updates,"
      f" init {args.from_etnas or args.init}, schedule {args.sched}, decay {args.decay}, gelu {args.gelu},"
      f" beta2 {args.beta2}, clip {args.clip}, pos std {args.pos_std}", flush=True)
for epoch in range(args.epochs):
    model.train()
    t0 = time.time()
    order = torch.randperm(len(xtr))
    loss_sum = 0.0
    for i in range(steps_per_epoch):
        b = order[i * B:(i + 1) * B]
        loss_sum += update(model, opt, sched, xtr[b], ytr[b])
    print(f"epoch {epoch + 1}: train loss {loss_sum / steps_per_epoch:.4f}, {time.time() - t0:.1f} s",
          flush=True)
model.eval()
with torch.no_grad():
    right = sum((model(xte[i:i + 500]).argmax(1) == yte[i:i + 500]).sum().item()
                for i in range(0, len(xte), 500))
print(f"test accuracy {100 * right / len(xte):.2f} %")
