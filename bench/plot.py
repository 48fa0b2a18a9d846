#!/usr/bin/python3
"""Draws varve-bench's figures (its --json output) as PNG and SVG.

Usage: /usr/bin/python3 bench/plot.py bench.json [OUT_DIR]   (default OUT_DIR: .)

Writes, into OUT_DIR:
  es1_throughput.{png,svg}   bars per phase (P1, P2, P4, P5) and peer, log scale
  es1_p3_latency.{png,svg}   P3 durable single append: p50 / p99 / max per peer
  es1_p6_cdf.{png,svg}       P6 per-append latency as a CDF, percentiles on a
                             log ("nines") scale, latency on a log scale
  es1_p7_cdf.{png,svg}       P7 append -> seen by a reader in another process,
                             the same way (when the run has P7)
  es1_replay_cold.{png,svg}  P9 replay events/s per worker count (warm), and
                             P10 cold reads against the raw io_uring ceiling
                             (when the run has P9 or P10)
Needs matplotlib (Debian: python3-matplotlib; bash tools/install-deps.sh --bench).
"""
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter  # noqa: E402

COLORS = {
    "varve": "#1f77b4",
    "varve-group": "#6baed6",
    "varve-sync": "#c6dbef",
    "rocksdb": "#d62728",
    "writelog": "#2ca02c",
    "kafka": "#9467bd",
    "ceiling": "#7f7f7f",
}
LABELS = {
    "varve": "varve (none)",
    "varve-group": "varve (group)",
    "varve-sync": "varve (sync)",
    "rocksdb": "RocksDB",
    "writelog": "write(2) log",
    "kafka": "Kafka",
    "ceiling": "ceiling",
}


def color(p):
    return COLORS.get(p, "#bcbd22")


def label(p):
    return LABELS.get(p, p)


def human(v):
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return "%.3g%s" % (v / div, suffix)
    return "%.3g" % v


def subtitle(j):
    m, c = j["machine"], j["config"]
    return "ES-1, E=%s events, A=%s aggregates, seed %s; %s, %s cores; %s; median of %s rep(s)" % (
        human(c["events"]), human(c["aggregates"]), c["seed"], m["cpu"], m["cores"], j["date"][:10], c["reps"])


def save(fig, out, name):
    for ext in ("png", "svg"):
        path = os.path.join(out, "%s.%s" % (name, ext))
        fig.savefig(path, dpi=100 if ext == "png" else None, bbox_inches="tight")
        print(path)
    plt.close(fig)


def throughput(j, out):
    peers = j["config"]["peers"]
    panels = [
        ("P1", "P1.events_per_s", "P1 append, not durable\n(events/s)"),
        ("P2", "P2.events_per_s", "P2 durable batches of %d\n(events/s)" % j["config"]["p2_batch"]),
        ("P4", "P4.events_per_s", "P4 full scan, warm cache\n(events/s)"),
        ("P5", "P5.aggregates_per_s", "P5 read one aggregate\n(aggregates/s)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 4.2))
    for ax, (phase, key, title) in zip(axes, panels):
        names, vals = [], []
        for p in peers:
            v = j["peers"].get(p, {}).get("figures", {}).get(key)
            if v:
                names.append(p)
                vals.append(v)
        xs = range(len(names))
        bars = ax.bar(xs, vals, color=[color(p) for p in names], edgecolor="black", linewidth=0.5)
        ax.set_yscale("log")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([label(p) for p in names], rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", which="major", alpha=0.3)
        for b, v in zip(bars, vals):
            ax.annotate(human(v), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 2), textcoords="offset points")
        if vals:
            ax.set_ylim(min(vals) / 3, max(vals) * 4)
    fig.suptitle("varve-bench: throughput per phase and peer (higher is better; log scale)\n" + subtitle(j),
                 fontsize=9)
    fig.tight_layout()
    save(fig, out, "es1_throughput")


def p3_latency(j, out):
    peers = [p for p in j["config"]["peers"] if "P3.p50_us" in j["peers"].get(p, {}).get("figures", {})]
    if not peers:
        return
    stats = [("p50", "P3.p50_us"), ("p99", "P3.p99_us"), ("max", "P3.max_us")]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(stats)
    for k, (name, key) in enumerate(stats):
        vals = [j["peers"][p]["figures"][key] for p in peers]
        xs = [i + (k - 1) * width for i in range(len(peers))]
        bars = ax.bar(xs, vals, width, color=[color(p) for p in peers], edgecolor="black", linewidth=0.5,
                      alpha=[1.0, 0.65, 0.35][k], label=name)
        for b, v in zip(bars, vals):
            ax.annotate("%.0f" % v if v >= 10 else "%.1f" % v, (b.get_x() + b.get_width() / 2, v),
                        ha="center", va="bottom", fontsize=6, xytext=(0, 1), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_ylabel("µs per durable append (log)")
    ax.set_xticks(range(len(peers)))
    ax.set_xticklabels([label(p) + ("\nwrite 4K+fdatasync" if p == "ceiling" else "") for p in peers], fontsize=8)
    ax.legend(title="bars, left to right", fontsize=7, title_fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("P3: %d single appends, each durable before the next (lower is better)\n%s"
                 % (j["config"]["p3_events"], subtitle(j)), fontsize=8)
    fig.tight_layout()
    save(fig, out, "es1_p3_latency")


def nines(p):
    return -math.log10(max(1e-7, 1 - p / 100.0))


def cdf(j, out, phase, unit, xlabel, mark, title, name):
    """A latency CDF per peer from info[PHASE.cdf]; mark = (x, text) drawn as a dotted line."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for p in j["config"]["peers"]:
        c = j["peers"].get(p, {}).get("info", {}).get(phase + ".cdf")
        if not c:
            continue
        pct, vals = c["percentile"], c[unit]
        pts = [(max(v, 1e-3), nines(q)) for q, v in zip(pct, vals) if q < 100]
        pts.append((max(vals[-1], 1e-3), nines(100)))  # the max, drawn at the top
        ax.step([a for a, _ in pts], [b for _, b in pts], where="post", color=color(p), label=label(p), linewidth=1.5)
        drawn = True
    if not drawn:
        plt.close(fig)
        return
    ticks = [0, 90, 99, 99.9, 99.99, 99.999, 99.9999]
    ax.yaxis.set_major_locator(FixedLocator([nines(t) for t in ticks]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: "%g" % (100 * (1 - 10 ** -y))))
    ax.set_ylim(0, nines(99.9999) + 0.2)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("percentile (log scale of 1 - p)")
    ax.axvline(mark[0], color="black", linestyle=":", linewidth=1)
    ax.text(mark[0], 0.2, " " + mark[1], fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("%s\n%s" % (title, subtitle(j).replace("median of %s rep(s)" % j["config"]["reps"],
                                                        "the distribution of the last of %s rep(s)"
                                                        % j["config"]["reps"])), fontsize=8)
    fig.tight_layout()
    save(fig, out, name)


def p6_cdf(j, out):
    cdf(j, out, "P6", "ns", "latency of one append call (ns, log scale)", (1000, "1 µs"),
        "P6: %s non-durable appends, each timed with steady_clock (further left is better)"
        % human(j["config"]["p6_events"]), "es1_p6_cdf")


def p7_cdf(j, out):
    c = j["config"]
    if "p7_events" not in c:
        return
    cdf(j, out, "P7", "us", "append call -> seen by the reader in another process (µs, log scale)",
        (1000, "1 ms"),
        "P7: %s events appended at a steady %s/s, followed from another process (further left is better)"
        % (human(c["p7_events"]), human(c["p7_rate"])), "es1_p7_cdf")


def replay_cold(j, out):
    f = j["peers"].get("varve", {}).get("figures", {})
    p9 = sorted({k.split("_")[1] for k in f if k.startswith("P9.trivial_") and k.endswith("t_events_per_s")},
                key=lambda t: int(t[:-1]))
    p10 = [k[len("P10."):-len("_MB_per_s")] for k in f if k.startswith("P10.") and k.endswith("_MB_per_s")
           and k not in ("P10.ceiling_MB_per_s", "P10.dd_MB_per_s")]
    if not p9 and not p10:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.38
    for i, (proj, col) in enumerate((("trivial", "#1f77b4"), ("work200", "#ff7f0e"))):
        vals = [f.get("P9.%s_%s_events_per_s" % (proj, t), 0) for t in p9]
        xs = [x + (i - 0.5) * width for x in range(len(p9))]
        bars = a.bar(xs, vals, width, color=col, edgecolor="black", linewidth=0.5,
                     label=proj if proj == "trivial" else "200 ns/event")
        for bar, v in zip(bars, vals):
            if v:
                a.annotate(human(v), (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom",
                           fontsize=7, xytext=(0, 2), textcoords="offset points")
        base = f.get("P9.%s_reader_events_per_s" % proj)
        if base:
            a.axhline(base, color=col, linestyle="--", linewidth=0.8)
    a.set_xticks(list(range(len(p9))))
    a.set_xticklabels(["%s worker%s" % (t[:-1], "" if t == "1t" else "s") for t in p9])
    a.set_yscale("log")
    a.set_title("P9 replay of the ES-1 log, warm (events/s)\ndashed: log_reader alone, one thread", fontsize=9)
    a.legend(fontsize=8)
    a.grid(axis="y", alpha=0.3)
    vals = [f["P10.%s_MB_per_s" % n] for n in p10]
    bars = b.barh(range(len(p10)), vals, color="#1f77b4", edgecolor="black", linewidth=0.5)
    for bar, v, n in zip(bars, vals, p10):
        b.annotate("%.0f (%.2fx)" % (v, f.get("P10.%s_over_ceiling" % n, 0)), (v, bar.get_y() + bar.get_height() / 2),
                   va="center", fontsize=7, xytext=(2, 0), textcoords="offset points")
    b.set_yticks(list(range(len(p10))))
    b.set_yticklabels([n.replace("_", " ") for n in p10], fontsize=8)
    if "P10.ceiling_MB_per_s" in f:
        b.axvline(f["P10.ceiling_MB_per_s"], color="#7f7f7f", linestyle="--", linewidth=1,
                  label="io_uring O_DIRECT ceiling")
        b.legend(fontsize=8, loc="lower right")
    b.set_title("P10 cold reads (MB/s; ratio to the ceiling)", fontsize=9)
    b.grid(axis="x", alpha=0.3)
    fig.suptitle("varve-bench: replay and cold reads (higher is better)\n" + subtitle(j), fontsize=9)
    fig.tight_layout()
    save(fig, out, "es1_replay_cold")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    j = json.load(open(sys.argv[1]))
    out = sys.argv[2] if len(sys.argv) == 3 else "."
    os.makedirs(out, exist_ok=True)
    throughput(j, out)
    p3_latency(j, out)
    p6_cdf(j, out)
    p7_cdf(j, out)
    replay_cold(j, out)


if __name__ == "__main__":
    main()
