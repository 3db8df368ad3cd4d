"""The teaching figures say what they claim: every arrow and actor is drawn, and bad tables are refused."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from flglm_kit.diagrams import MESSAGES, recovery_heatmap, split_diagram, step_swimlane, threat_map  # noqa: E402


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    plt.close(fig)
    return buf.getvalue()


def test_the_split_diagram_has_the_four_tensors_both_blocks_and_a_key_per_client():
    fig = split_diagram(clients=("site-x", "site-y"))
    texts = _texts(fig)
    assert {"h_A", "h_B", "dL/dh_B", "dL/dh_A"} <= set(texts)
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == 4
    joined = "\n".join(texts)
    assert "input block" in joined and "output block" in joined and "trunk" in joined
    assert "K_site-x" in joined and "K_site-y" in joined and "labels stay here" in joined
    assert _png(fig).startswith(b"\x89PNG")


def test_the_split_diagram_needs_a_client():
    with pytest.raises(ValueError, match="at least one client"):
        split_diagram(clients=())


def test_the_swimlane_shows_the_four_messages_in_wire_order():
    fig = step_swimlane()
    labels = [t for t in _texts(fig) if t and t[0] in "①②③④"]
    assert labels == [f"{m} {kind}: {sym}" for m, (kind, sym, _) in zip("①②③④", MESSAGES)]
    assert [k for k, _, _ in MESSAGES] == ["activations", "trunk_output", "output_grads", "activation_grads"]
    plt.close(fig)


def test_the_threat_map_names_each_actor_and_says_the_keys_do_not_stop_the_server():
    joined = "\n".join(_texts(threat_map()))
    for actor in ("victim client", "peer client", "eavesdropper", "server"):
        assert actor in joined
    assert "keys do not stop: the server" in joined and "decrypts to compute" in joined
    plt.close("all")


def test_the_heatmap_labels_each_cell_and_leaves_unmeasured_cells_blank():
    fig = recovery_heatmap([[1.0, None], [0.25, math.nan]], ["attack a", "attack b"], ["p=0", "p=1"],
                           labels=[["all", "-"], ["a quarter", "-"]])
    texts = _texts(fig)
    assert texts.count("not\nmeasured") == 2 and "all" in texts and "a quarter" in texts
    image = fig.axes[0].images[0].get_array()
    assert image[0][0] == 100 and image[1][0] == 25 and image.mask[0][1]  # NaN cells are masked, not zero
    assert _png(fig).startswith(b"\x89PNG")


@pytest.mark.parametrize("values, rows, cols, says", [
    ([[0.5]], ["a", "b"], ["x"], "must be 2 rows"),
    ([[0.5, 0.1]], ["a"], ["x"], "must be 1 rows of 1"),
    ([[1.5]], ["a"], ["x"], "fractions in"),
])
def test_the_heatmap_refuses_a_table_of_the_wrong_shape_or_percentages(values, rows, cols, says):
    with pytest.raises(ValueError, match=says):
        recovery_heatmap(values, rows, cols)
