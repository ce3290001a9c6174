"""The README's Python API section runs as written: the package's front door is what it documents."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_block() -> str:
    text = README.read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's Python API section has no python block"
    return "\n".join(blocks)


def test_readme_api_section_runs_as_written(tiny_run, data_root, tmp_path):
    env = dict(os.environ, COVIDLENS_DATA=str(data_root), COVIDLENS_CHECKPOINT=str(tiny_run / "model"))
    script = tmp_path / "readme_api.py"
    script.write_text(_api_block())
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_top_level_names_resolve_lazily():
    import covidlens

    for name in ("create_model", "list_models", "load_checkpoint", "predict", "explain_image", "read_image", "read_scan"):
        assert callable(getattr(covidlens, name)), name
    assert "create_model" in dir(covidlens)
