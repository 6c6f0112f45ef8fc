"""The engine benchmark's model and training step in PyTorch, for comparison.

Same model as bench/engine.c: ViT-style encoder classifier, E 256, 6 pre-norm
layers, 4 heads of 64, FFN 1024, GELU (tanh approximation), 64 patch vectors
of 48 features + class token = 65 tokens, batch 64, 10 classes, label
smoothing 0.1, AdamW with clipping at 1.0. Run by bench/engine.sh with the
same thread count; prints the step time and the batch-1 forward latency.
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
torch.set_num_threads(threads)
torch.manual_seed(1)

E, L, H, FF, T, B, IN, C = 256, 6, 4, 1024, 64, 64, 48, 10


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(E)
        self.qkv = nn.Linear(E, 3 * E)
        self.proj = nn.Linear(E, E)
        self.ln2 = nn.LayerNorm(E)
        self.fc1 = nn.Linear(E, FF)
        self.fc2 = nn.Linear(FF, E)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, H, E // H).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v) if hasattr(F, "scaled_dot_product_attention") \
            else torch.softmax(q @ k.transpose(-1, -2) / (E // H) ** 0.5, -1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, E))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(IN, E)
        self.cls = nn.Parameter(torch.zeros(1, 1, E))
        self.pos = nn.Parameter(torch.zeros(1, T + 1, E))
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.lnf = nn.LayerNorm(E)
        self.head = nn.Linear(E, C)

    def forward(self, x):
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.embed(x)], 1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.lnf(x)[:, 0])


model = ViT()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), weight_decay=0.05)
x = torch.randn(B, T, IN)
y = torch.arange(B) % C


def step():
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


for _ in range(3):
    step()
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
mean = sum(times) / len(times)
print(f"PyTorch {torch.__version__}, {threads} threads: train step mean {mean * 1e3:.1f} ms, "
      f"best {min(times) * 1e3:.1f} ms, {B / mean:.0f} examples/s")
model.eval()
with torch.no_grad():
    x1 = x[:1]
    for _ in range(20):
        model(x1)
    t0 = time.perf_counter()
    for _ in range(200):
        model(x1)
    print(f"PyTorch inference latency (batch 1, 65 tokens): "
          f"{(time.perf_counter() - t0) / 200 * 1e3:.3f} ms mean of 200")
