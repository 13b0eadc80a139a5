"""Markdown table of two `magseg evaluate --model ... --json` results side by side (e.g. with and without
self-distillation): mean Dice per region for every modality subset, the mean over subsets, and the
Shapley importance. Usage: python3 docs/tools/subset_table.py A.json B.json [label A] [label B]"""
import json, sys

a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
la = sys.argv[3] if len(sys.argv) > 3 else "A"
lb = sys.argv[4] if len(sys.argv) > 4 else "B"
regions = a["regions"]
dice = lambda s: {r["region"]: r["dice_mean"] for r in s["summary"]}
hd = lambda s: {r["region"]: r["hd95_mean"] for r in s["summary"]}
print("| subset | " + " | ".join(f"{r} {la} | {r} {lb}" for r in regions) + " |")
print("|---|" + "---|" * (2 * len(regions)))
means = {k: {r: [] for r in regions} for k in (la, lb)}
for sa, sb in zip(a["subsets"], b["subsets"]):
    assert sa["name"] == sb["name"]
    da, db = dice(sa), dice(sb)
    cells = []
    for r in regions:
        cells += [f"{da[r]:.3f}", f"{db[r]:.3f}"]
        means[la][r].append(da[r]); means[lb][r].append(db[r])
    print(f"| {sa['name']} | " + " | ".join(cells) + " |")
cells = []
for r in regions:
    cells += [f"**{sum(means[la][r]) / len(means[la][r]):.3f}**", f"**{sum(means[lb][r]) / len(means[lb][r]):.3f}**"]
print("| mean of 15 subsets | " + " | ".join(cells) + " |")
print()
print("HD95 (mm, MONAI convention; 373.13 = an empty prediction, the BraTS penalty), all modalities: "
      + ", ".join(f"{r} {hd(a['subsets'][0])[r]:.1f} / {hd(b['subsets'][0])[r]:.1f}" for r in regions))
print()
print(f"| modality | " + " | ".join(f"{r} {la} | {r} {lb}" for r in regions) + " |")
print("|---|" + "---|" * (2 * len(regions)))
for i, m in enumerate(a["modalities"]):
    cells = []
    for ia, ib in zip(a["importance"], b["importance"]):
        cells += [f"{ia['values'][i][1]:.3f}", f"{ib['values'][i][1]:.3f}"]
    print(f"| {m} | " + " | ".join(cells) + " |")
