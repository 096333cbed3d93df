"""runtime/ stays the bottom layer: torch-free imports, lazy backend libraries, Python 3.8 syntax."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime"
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).replace(".__init__", "")
    for p in RUNTIME.rglob("*.py")
)


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_runtime_module_imports_without_torch_or_backend_libraries():
    assert "runtime.inspector" in MODULES and "runtime.backends.tensorrt" in MODULES
    code = (
        "import importlib, json, sys\n"
        f"mods = {MODULES!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        "heavy = ['torch', 'train', 'onnxruntime', 'openvino', 'tensorrt', 'cuda', 'onnx']\n"
        "print(json.dumps({h: h in sys.modules for h in heavy}))\n"
    )
    loaded = _run(code)
    assert loaded == {k: False for k in loaded}, loaded


def test_import_runtime_is_lazy():
    code = (
        "import json, sys, time\n"
        "t = time.perf_counter(); import runtime; dt = time.perf_counter() - t\n"
        "names = ['numpy', 'cv2', 'torch', 'runtime.inspector']\n"
        "out = {n: n in sys.modules for n in names}\n"
        "from runtime import Inspector, ManifestError\n"
        "out['inspector_after'] = 'runtime.inspector' in sys.modules\n"
        "out['torch_after'] = 'torch' in sys.modules\n"
        "out['seconds'] = dt\n"
        "print(json.dumps(out))\n"
    )
    out = _run(code)
    print(f"import runtime: {out['seconds'] * 1000:.1f} ms")  # reported, not asserted (no timed assertions)
    assert not out["numpy"] and not out["cv2"] and not out["torch"] and not out["runtime.inspector"]
    assert out["inspector_after"] and not out["torch_after"]


def test_using_the_onnxruntime_path_stays_torch_free(tmp_path):
    from tests.helpers.tiny_models import make_model

    model = make_model(str(tmp_path))
    code = (
        "import json, sys, numpy as np\n"
        "from runtime import Inspector, available_backends\n"
        "names = available_backends()\n"
        f"r = Inspector({model!r}, backend='onnxruntime').inspect(np.zeros((32, 48, 3), np.uint8))\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'train': 'train' in sys.modules,\n"
        "                  'score': r.score, 'torch_listed': 'torch' in names}))\n"
    )
    out = _run(code)
    assert out["torch"] is False and out["train"] is False and out["score"] > 0
    import importlib.util

    expected = importlib.util.find_spec("torch") is not None  # found by find_spec, never imported
    assert out["torch_listed"] == expected


def test_runtime_sources_are_python38_and_use_future_annotations():
    newer_apis = ("removeprefix(", "removesuffix(", "functools.cache(", "zoneinfo", "math.lcm(", "str | None",
                  "int | None", "list[", "dict[", "tuple[")
    for path in RUNTIME.rglob("*.py"):
        src = path.read_text()
        ast.parse(src, filename=str(path), feature_version=(3, 8))
        tree = ast.parse(src)
        futures = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
        assert any(a.name == "annotations" for n in futures for a in n.names), f"{path}: no future annotations"
        code_only = "\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith("#"))
        for api in newer_apis[:5]:
            assert api not in code_only, f"{path} uses {api} (Python 3.9+)"
        # PEP 585/604 forms are fine in annotations (strings under future annotations) but not at run time:
        # cast(), isinstance() and aliases evaluate them. Check module-level assignments.
        for node in tree.body:
            if isinstance(node, ast.Assign):
                text = ast.get_source_segment(src, node.value) or ""
                assert not any(api in text for api in newer_apis[5:]), f"{path}: {text}"


def test_no_module_level_import_of_heavy_libraries():
    heavy = {"torch", "onnxruntime", "openvino", "tensorrt", "cuda", "onnx", "train", "pycuda"}
    for path in RUNTIME.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only; imports inside functions are the lazy ones
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for n in names:
                assert n.split(".")[0] not in heavy, f"{path} imports {n} at module level"
