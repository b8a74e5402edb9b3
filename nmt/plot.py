"""Pictures of what the model looked at: encoder-decoder attention as heat maps, target pieces against source pieces.

One PNG per sentence: a panel per decoder layer (each averaged over its heads), the last layer's panel marked, since
it is the one the hard alignments (--print-alignment) come from. matplotlib is an optional dependency (nmt[plot]).
"""

from __future__ import annotations

from pathlib import Path

from nmt.atomic import atomic_write
from nmt.errors import NmtError

# Fonts tried in order for the piece labels: DejaVu covers Latin, Greek and Cyrillic; the Noto CJK/Arabic/Devanagari
# families cover other scripts where installed. matplotlib falls back along this list per glyph (>= 3.6).
FONTS = ["DejaVu Sans", "Noto Sans", "Noto Sans CJK JP", "Noto Sans Arabic", "Noto Sans Devanagari"]


def check_plotting(what: str = "--attention-plot") -> None:
    """Fail early, in one line naming the option, where matplotlib (the `plot` extra) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NmtError(f"{what} needs matplotlib: pip install 'nmt[plot]'") from None


def _label(piece: str) -> str:
    return piece.replace("\u2581", "_")  # SentencePiece's word-start mark, shown as in fairseq's plots


def plot_attention(translation, path: Path, title: str = "") -> Path:
    """Draw `translation.attention` (layers, target + eos, source + eos) to `path` (written atomically)."""
    import matplotlib.pyplot as plt

    figure = attention_figure(translation, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path, "wb") as handle:
            figure.savefig(handle, dpi=110, format="png")
    finally:
        plt.close(figure)
    return path


def attention_figure(translation, title: str = ""):
    """The matplotlib figure: a heat map per decoder layer, source pieces across, target pieces down, and one colour
    bar for the attention weight (0 to 1, shared by every panel)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    attention = translation.attention
    layers, rows, columns = attention.shape
    sources = [_label(p) for p in translation.source_tokens] + ["</s>"]
    targets = [_label(p) for p in translation.tokens] + ["</s>"]
    available = {font.name for font in font_manager.fontManager.ttflist}
    families = [name for name in FONTS if name in available] or ["sans-serif"]
    cell = 0.32
    width = max(3.0, columns * cell + 1.5)
    height = max(3.0, rows * cell + 1.5)
    figure, axes = plt.subplots(1, layers, figsize=(width * layers + 1.2, height), squeeze=False, layout="constrained")
    for layer, ax in enumerate(axes[0]):
        image = ax.imshow(attention[layer], cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
        ax.set_xticks(range(columns), sources[:columns], rotation=90, family=families, fontsize=8)
        ax.set_yticks(range(rows), targets[:rows], family=families, fontsize=8)
        last = " (last: alignments)" if layer == layers - 1 else ""
        ax.set_title(f"decoder layer {layer + 1}, mean of heads{last}", fontsize=9)
        ax.set_xlabel("source pieces")
        if layer == 0:
            ax.set_ylabel("target pieces")
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="attention weight")
    if title:
        figure.suptitle(f"{title}: {translation.text}", fontsize=10, family=families)
    return figure
