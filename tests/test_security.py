"""Security rules over the whole repository: no pickle on files a user hands us, no shell strings, and a manifest
cannot make the runtime open a file outside the manifest's own folder.

The source rules are checked on the syntax tree of every .py file (not on raw text, so comments and strings
that mention a pattern do not count, and a call split over lines still does); the checker is itself tested on
small snippets, so a scan that finds nothing means something.
"""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import List

import pytest

from tests.helpers.tiny_models import make_model

from runtime.errors import ManifestError
from runtime.manifest import artifact_path_for, load_manifest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", "build", "dist", ".eggs", "__pycache__", "node_modules", ".venv", "venv"}
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"  # a call, subscript, ...: `make().eval` is a method, not the builtin eval


def _true(call: ast.Call, name: str) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def violations(source: str, where: str = "<snippet>") -> List[str]:
    """Every use of pickle, torch.load without weights_only=True, allow_pickle=True, a shell, eval or exec."""
    found: List[str] = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            mod = (node.module or "").split(".")[0]
            if mod in PICKLE_MODULES:
                found.append(f"{line}: from {node.module} import ...")
            if mod == "torch" and any(a.name == "load" for a in node.names):
                found.append(f"{line}: from torch import load (call it as torch.load(..., weights_only=True))")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            parts = tuple(name.split("."))
            if name in ("torch.load", "torch.serialization.load") and not _true(node, "weights_only"):
                found.append(f"{line}: {name} without weights_only=True")
            if _true(node, "allow_pickle"):
                found.append(f"{line}: {name}(..., allow_pickle=True)")
            if name.endswith("read_pickle") or (len(parts) == 2 and parts[0] in PICKLE_MODULES):
                found.append(f"{line}: {name}")
            if _true(node, "shell"):
                found.append(f"{line}: {name}(..., shell=True)")
            if parts[-2:] in SHELL_CALLS:
                found.append(f"{line}: {name} runs a shell")
            if name in ("eval", "exec"):
                found.append(f"{line}: builtin {name}")
    return found


def python_files() -> List[Path]:
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        out += [Path(folder) / f for f in files if f.endswith(".py")]
    return sorted(out)


@pytest.mark.parametrize("snippet", [
    "import torch\nm = torch.load(path)",
    "import torch\nm = torch.load(path, weights_only=False)",
    "import torch\nm = torch.load(\n    path,\n    map_location='cpu')",
    "from torch import load",
    "import pickle\nx = pickle.load(f)",
    "from pickle import loads",
    "import numpy as np\nx = np.load(path, allow_pickle=True)",
    "import pandas as pd\nx = pd.read_pickle(path)",
    "import subprocess\nsubprocess.run(f'ffmpeg -i {name}', shell=True)",
    "import os\nos.system('ls ' + folder)",
    "import os\nos.popen(cmd)",
    "eval(text)",
])
def test_the_checker_finds_each_pattern(snippet):
    assert violations(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import torch\nm = torch.load(path, weights_only=True, map_location='cpu')",
    "import numpy as np\nx = np.load(path)",
    "import subprocess\nsubprocess.run(['ffmpeg', '-i', name], check=True)",
    "model.eval()",
    "graph.to(device).eval()",
    "# pickle.load(f) in a comment\ns = 'torch.load(path)'",
])
def test_the_checker_passes_safe_code(snippet):
    assert violations(snippet) == []


def test_no_pickle_no_shell_no_eval_anywhere_in_the_repository():
    files = python_files()
    assert len(files) > 50 and any(p.parts[-3:] == ("runtime", "manifest", "files.py") for p in files)
    found = []
    for p in files:
        found += violations(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))
    assert found == [], "\n".join(found)


# -- manifest artifact paths -----------------------------------------------------------------------------------
ESCAPES = ["../outside.onnx", "../../outside.onnx", "/tmp/outside.onnx", "sub/inner.onnx", "./m.onnx", "..",
           "", "outside.onnx/"]


@pytest.fixture()
def model_dir(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    path = make_model(str(d))
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(Path(path).read_bytes())  # a real, loadable model outside the manifest's folder
    (d / "sub").mkdir()
    (d / "sub" / "inner.onnx").write_bytes(Path(path).read_bytes())
    return d, Path(path)


def _manifest_naming(model_dir, artifact):
    """A copy of the model's manifest, beside it, whose 'artifact' is `artifact`."""
    d, path = model_dir
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest["artifact"] = artifact
    bad = d / "bad.json"
    bad.write_text(json.dumps(manifest))
    return bad


@pytest.mark.parametrize("artifact", ESCAPES)
def test_a_manifest_cannot_name_an_artifact_outside_its_folder(model_dir, artifact):
    bad = _manifest_naming(model_dir, artifact)
    with pytest.raises(ManifestError, match="artifact"):
        load_manifest(str(bad))


@pytest.mark.parametrize("artifact", ["../outside.onnx", "/tmp/outside.onnx", "sub/inner.onnx"])
def test_the_inspector_refuses_a_manifest_that_points_outside(model_dir, artifact):
    from runtime.inspector import Inspector

    bad = _manifest_naming(model_dir, artifact)
    with pytest.raises(ManifestError):
        Inspector(str(bad), backend="onnxruntime", warmup=False)


def test_artifact_path_for_stays_in_the_manifest_folder(model_dir):
    d, path = model_dir
    m = load_manifest(str(path))
    resolved = artifact_path_for(str(path.with_suffix(".json")), m)
    assert os.path.commonpath([os.path.realpath(resolved), os.path.realpath(d)]) == os.path.realpath(d)
    assert os.path.basename(resolved) == m.artifact
