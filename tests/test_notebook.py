"""The quickstart notebook executes end to end (at a reduced training budget)."""

import os
import shutil

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "notebooks", "quickstart.ipynb")


def test_quickstart_notebook_runs(tmp_path, monkeypatch, isolated_cache_dir):
    monkeypatch.setenv("QUICKSTART_STEPS", "400")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs if o.output_type == "stream")
    assert "greedy policy: mean reward" in text
    assert (tmp_path / "runs" / "quickstart-dqn" / "crystals" / "top_crystals.json").exists()
    if shutil.which("pw.x"):
        assert "band gap:" in text and "status: 0" in text
