"""A readable evaluation report: CKPT_DIR/report/report.md with its plots.

Made by `birdclef evaluate` from the same dict it writes to evaluation.json, so
the report never shows a number that evaluation.json does not hold:
  report.md             summary, bird or not (presence and non-bird false alarms), per-class table
                        (weakest AP first), threshold sweep table
  threshold_sweep.png   BirdCLEF row-wise F1 and detection precision/recall of the soundscape
                        windows against the threshold, with the always-nocall floor and the
                        threshold chosen on the val split
  per_class_ap.png      test-chunk AP per class
  confusion.png         test chunks by true and top-1 class: counts in the cells, colour the row fraction
and, for `birdclef compare --plot`, one bar chart of several models' main metrics (`plot_models`).
Plots use matplotlib's non-interactive Agg backend (no screen needed).
"""
from __future__ import annotations

import io

from birdclef import fileio


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _presence_section(ev: dict) -> list[str]:
    """Bird or not: the `bird` output on test chunks and soundscape windows (any bird, also those the model
    has no class for) and the test split's non-bird clips given a bird label, with examples."""
    rows = []
    for name, key in (("test chunks (bird recordings against non-bird clips)", "chunk_presence"),
                      (f"{ev.get('soundscape_split', '')} soundscape windows", "window_presence")):
        p = ev.get(key) or {}
        if p.get("n"):
            rows.append({"measured on": name, "n": p["n"], "with birds": p.get("positives"), "AUC": p.get("auc"),
                         "precision": p.get("precision"), "recall": p.get("recall"), "F1": p.get("f1")})
    nb = ev.get("nonbird_test") or {}
    if not rows and not nb.get("clips"):
        return []
    md = ["", "## Bird or not", ""]
    if rows:
        md += markdown_table(rows, ["measured on", "n", "with birds", "AUC", "precision", "recall", "F1"])
    if nb.get("clips"):
        md += ["", f"Test non-bird clips given a bird label ({nb['clips']} clips, presence gate "
                   f"{nb.get('presence_threshold')}):", ""]
        for threshold, c in (nb.get("called_bird") or {}).items():
            md.append(f"- class threshold {threshold}: {c.get('n')} ({100 * (c.get('share') or 0):.1f} %)"
                      + (": " + "; ".join(c.get("examples") or []) if c.get("examples") else ""))
    return md


def markdown_table(rows: list[dict], cols: list[str]) -> list[str]:
    """Lines of a markdown table of `cols` of each row: floats to 3 decimals, None or NaN as n/a.
    The one renderer of the report's tables and of `birdclef compare`."""
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
            *("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows)]


def _save(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    fileio.write_bytes(path, buf.getvalue())


def _plot_sweep(ev: dict, path: str) -> None:
    import matplotlib.pyplot as plt

    sweep = ev["threshold_sweep"]
    t = [x["threshold"] for x in sweep]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    # distinct markers and lines, so curves that coincide (often precision and recall) stay visible
    for key, label, style in (("row_f1", "row-wise F1 (BirdCLEF-2021)", "o-"),
                              ("detection_precision", "detection precision", "s--"),
                              ("detection_recall", "detection recall", "^:")):
        ax.plot(t, [x[key] if x[key] is not None else float("nan") for x in sweep], style, label=label,
                markerfacecolor="none")
    if ev.get("row_f1_all_nocall") is not None:
        ax.axhline(ev["row_f1_all_nocall"], color="grey", ls=":", label="row F1, always nocall")
    chosen = ev.get("val_threshold", {}).get("threshold")
    if chosen is not None:
        ax.axvline(chosen, color="black", ls="--", label=f"chosen on val: {chosen}")
    ax.set(xlabel="threshold", ylim=(0, 1.02),
           title=f"{ev.get('soundscape_split', '')} soundscape windows ({ev.get('soundscape_windows', 0)})")
    # beside the axes, never over a curve (inside, it covered the always-nocall line)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    _save(fig, path)


def _plot_ap(per_class: list[dict], path: str) -> None:
    import matplotlib.pyplot as plt

    rows = [r for r in per_class if r["AP"] is not None]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(rows) + 1))
    ax.barh([f"{r['class']} ({r['support']})" for r in rows], [r["AP"] for r in rows])
    ax.invert_yaxis()  # weakest at the top
    ax.set(xlim=(0, 1), xlabel="average precision (test chunks)", title="per class (chunks)")
    _save(fig, path)


def _plot_confusion(conf: dict, path: str) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.array(conf["counts"], float)
    frac = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(conf["classes"])
    fig, ax = plt.subplots(figsize=(0.45 * n + 2, 0.45 * n + 1.5))
    im = ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(n), conf["classes"], rotation=90, fontsize=7)
    ax.set_yticks(range(n), conf["classes"], fontsize=7)
    for i in range(n):  # the chunk counts in the cells (colour: row fraction)
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=6,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set(xlabel="top-1 class", ylabel="true class", title="test chunks (counts; colour: row fraction)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)


def write(ev: dict, out_dir: str) -> str:
    """Write report.md and the plots that the evaluation holds data for; returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    fileio.makedirs(out_dir)
    md = [f"# Evaluation of {ev.get('ckpt_dir', '')}", "",
          f"Exported model `{ev.get('export', '')}`, measured on data it never trained on "
          f"(the numbers are those of `evaluation.json`).", "", "## Summary", ""]
    summary = [("test chunks", "test_chunks"), ("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"),
               ("mAP", "mAP"), ("recording accuracy", "recording_accuracy"),
               ("soundscape windows", "soundscape_windows"), (f"row-wise F1 at {ev.get('threshold')}", "row_f1"),
               ("row-wise F1, always nocall", "row_f1_all_nocall"),
               ("detection precision", "detection_precision"), ("detection recall", "detection_recall")]
    md += markdown_table([{"metric": name, "value": ev.get(key)} for name, key in summary], ["metric", "value"])
    vt = ev.get("val_threshold", {})
    if vt.get("threshold") is not None:
        at = ev.get("at_val_threshold", {})
        md += ["", f"Threshold chosen on the {vt['source']} ({vt['n']}): **{vt['threshold']}**"
               + (f"; test row-wise F1 at it: {_fmt(at.get('row_f1'))}." if at else ".")]
    if ev.get("birds_not_in_classes"):
        md += ["", "Labelled birds this model has no class for: " + ", ".join(ev["birds_not_in_classes"])]
    md += _presence_section(ev)
    if ev.get("per_class"):
        _plot_ap(ev["per_class"], fileio.join(out_dir, "per_class_ap.png"))
        md += ["", "## Per class (test chunks, weakest AP first)", "", "![per-class AP](per_class_ap.png)", ""]
        md += markdown_table(ev["per_class"], ["class", "support", "AP", "precision", "recall", "f1",
                                               "most_confused_with", "confused_chunks"])
    if ev.get("confusion", {}).get("classes"):
        _plot_confusion(ev["confusion"], fileio.join(out_dir, "confusion.png"))
        md += ["", "## Confusion (test chunks)", "", "![confusion matrix](confusion.png)"]
    if ev.get("threshold_sweep"):
        _plot_sweep(ev, fileio.join(out_dir, "threshold_sweep.png"))
        md += ["", f"## Threshold sweep ({ev.get('soundscape_split')} soundscape windows)", "",
               "![threshold sweep](threshold_sweep.png)", ""]
        md += markdown_table(ev["threshold_sweep"], ["threshold", "row_f1", "detection_precision", "detection_recall"])
    if ev.get("skipped"):
        md += ["", "## Skipped", "", *(f"- {s}" for s in ev["skipped"])]
    path = fileio.join(out_dir, "report.md")
    fileio.write_text(path, "\n".join(md) + "\n")
    return path


PLOTTED = ("k-NN top-1", "k-NN birds", "clf top-1", "clf balanced", "mAP", "row F1")


def plot_models(table: list[dict], path: str) -> list[str]:
    """Grouped bars of the `compare` table's main metrics, one colour per model, with the majority-class
    floor; metrics no model has (e.g. before `evaluate`) are left out. Returns the metrics plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [m for m in PLOTTED if any(isinstance(r.get(m), float) for r in table)]
    fig, ax = plt.subplots(figsize=(1.3 * max(len(metrics), 1) + 3, 3.8))
    width = 0.8 / max(len(table), 1)
    for k, r in enumerate(table):
        values = [r[m] if isinstance(r.get(m), float) else np.nan for m in metrics]
        ax.bar(np.arange(len(metrics)) + (k - (len(table) - 1) / 2) * width, values, width,
               label=f"{r['model']} ({r['loss']})")
    floors = [r["majority"] for r in table if isinstance(r.get("majority"), float)]
    if floors:
        ax.axhline(floors[0], color="grey", ls=":", label="majority class (chunks)")
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set(ylim=(0, 1.02), title="test split, side by side")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)
    return metrics
