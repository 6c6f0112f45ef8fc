"""Summarise bench/attention_scaling's CSV: per operator and mode, the time
ratio t(16384)/t(1024), how memory grows, the length where each kernel
operator overtakes softmax, and a log-log SVG plot of time against length.
Plain SVG text; no plotting library needed.

    python3 bench/plot_scaling.py results.csv plot.svg
"""
import csv
import math
import sys

rows = list(csv.DictReader(open(sys.argv[1])))
out_svg = sys.argv[2] if len(sys.argv) > 2 else "attention_scaling.svg"

series = {}
for r in rows:
    key = (r["operator"], r["mode"])
    t = 1e3 * (float(r["forward_s"]) + float(r["backward_s"]))
    series.setdefault(key, []).append((int(r["len"]), t, float(r["peak_rss_mb"])))
for v in series.values():
    v.sort()


def at(key, n):
    for length, t, m in series.get(key, []):
        if length == n:
            return t, m
    return None


print("operator,mode,t1024_ms,t16384_ms,ratio_16384_over_1024,rss1024_mb,rss16384_mb,overtakes_softmax_at")
for (op, mode), pts in sorted(series.items()):
    a, b = at((op, mode), 1024), at((op, mode), 16384)
    cross = ""
    if op != "softmax":
        for length, t, _ in pts:
            s = at(("softmax", mode), length)
            if s and t < s[0]:
                cross = str(length)
                break
        if not cross:
            cross = "not within the measured lengths"
    print(",".join([op, mode,
                    f"{a[0]:.3f}" if a else "", f"{b[0]:.3f}" if b else "",
                    f"{b[0] / a[0]:.2f}" if a and b else "",
                    f"{a[1]:.1f}" if a else "", f"{b[1]:.1f}" if b else "", cross]))

W, Hh, M = 720, 480, 60
lens = [p[0] for v in series.values() for p in v]
times = [p[1] for v in series.values() for p in v if p[1] > 0]
x0, x1 = math.log10(min(lens)), math.log10(max(lens))
y0, y1 = math.log10(min(times)), math.log10(max(times))


def sx(n):
    return M + (math.log10(n) - x0) / max(x1 - x0, 1e-9) * (W - 2 * M)


def sy(t):
    return Hh - M - (math.log10(t) - y0) / max(y1 - y0, 1e-9) * (Hh - 2 * M)


colors = {"softmax": "#d62728", "cosformer": "#1f77b4", "performer": "#2ca02c", "linear": "#9467bd"}
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{Hh}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{Hh}" fill="white"/>',
       f'<text x="{W / 2}" y="20" text-anchor="middle">attention forward + backward time (B 1, H 4, d 64), log-log</text>',
       f'<line x1="{M}" y1="{Hh - M}" x2="{W - M}" y2="{Hh - M}" stroke="black"/>',
       f'<line x1="{M}" y1="{M}" x2="{M}" y2="{Hh - M}" stroke="black"/>']
for n in sorted(set(lens)):
    svg.append(f'<text x="{sx(n):.1f}" y="{Hh - M + 16}" text-anchor="middle">{n}</text>')
for e in range(math.floor(y0), math.ceil(y1) + 1):
    if y0 <= e <= y1:
        svg.append(f'<text x="{M - 6}" y="{sy(10 ** e) + 4:.1f}" text-anchor="end">{10 ** e:g} ms</text>')
svg.append(f'<text x="{W / 2}" y="{Hh - 15}" text-anchor="middle">sequence length</text>')
legend = 0
for (op, mode), pts in sorted(series.items()):
    col = colors.get(op, "black")
    dash = ' stroke-dasharray="5,4"' if mode == "causal" else ""
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(n):.1f},{sy(t):.1f}" for i, (n, t, _) in enumerate(pts) if t > 0)
    svg.append(f'<path d="{path}" fill="none" stroke="{col}" stroke-width="2"{dash}/>')
    svg.append(f'<text x="{M + 10}" y="{M + 14 * legend}" fill="{col}">{op} {mode}</text>')
    legend += 1
svg.append("</svg>")
open(out_svg, "w").write("\n".join(svg) + "\n")
print(f"plot: {out_svg}")
