import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from covidlens.evaluation.plots import plot_confusion, plot_roc_one_vs_rest


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the plotting functions save, kept to inspect what was drawn."""
    figures = []
    original = Figure.savefig

    def record(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def _curves(figure):
    return [line for line in figure.axes[0].get_lines() if len(line.get_xdata()) > 2]


def test_one_vs_rest_roc_draws_one_curve_per_class_with_its_auc(tmp_path, saved_figures):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    probs = rng.dirichlet(np.ones(3), 150) + 0.6 * np.eye(3)[y]
    names = ["normal", "covid", "pneumonia"]
    path = tmp_path / "roc.png"
    plot_roc_one_vs_rest(y, probs, names, path, title="test")
    assert path.stat().st_size > 5000
    (figure,) = saved_figures
    assert len(_curves(figure)) == 3
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    for k, name in enumerate(names):
        assert f"{name} (AUC {roc_auc_score(y == k, probs[:, k]):.3f}, n={(y == k).sum()})" in legend


def test_one_vs_rest_roc_lists_a_class_without_images_as_undefined(tmp_path, saved_figures):
    y = np.array([0, 1, 0, 1, 1, 0])
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.3, 0.6, 0.1], [0.6, 0.3, 0.1],
                      [0.8, 0.1, 0.1]])
    plot_roc_one_vs_rest(y, probs, ["a", "b", "c"], tmp_path / "roc.png")
    legend = [t.get_text() for t in saved_figures[0].axes[0].get_legend().get_texts()]
    assert "c (AUC undefined, n=0)" in legend and len(_curves(saved_figures[0])) == 2


@pytest.mark.parametrize("num_classes", [2, 5])
def test_confusion_plot_names_classes_and_writes_every_count(tmp_path, saved_figures, num_classes):
    names = [f"class-{k}" for k in range(num_classes)]
    matrix = np.arange(num_classes * num_classes).reshape(num_classes, num_classes) * 3
    path = tmp_path / "confusion.png"
    plot_confusion(matrix, names, path, title="counts")
    assert path.stat().st_size > 3000
    ax = saved_figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(matrix.ravel().tolist())


def test_plots_refuse_shapes_that_do_not_match_the_class_names(tmp_path):
    with pytest.raises(ValueError, match="3 x 3"):
        plot_confusion(np.zeros((2, 2), int), ["a", "b", "c"], tmp_path / "c.png")
    with pytest.raises(ValueError, match="images x 2 classes"):
        plot_roc_one_vs_rest([0, 1], np.zeros((2, 3)), ["a", "b"], tmp_path / "r.png")
