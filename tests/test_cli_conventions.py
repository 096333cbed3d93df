"""The command lines agree (CONTRIBUTING.md, "Command lines"), and every error of ours has the one root.

Every module of the toolkit that builds an argparse parser is found by reading the tree (a new entry point is
checked without being listed here) and must expose `build_parser()`, with: help text on every shown flag; no
`--quiet` (progress off is `--no-progress`); an exported artifact spelled `--model`; `--backend` choices from
the runtime registry (+ "auto"), no alias; `--images` a count; one batch size `--batch-size N` (or `--...-batch-size`),
a list of them `--batch-sizes N ...`, a TensorRT profile `--profile MIN:OPT:MAX`; `--out` a FILE (one artifact)
or a DIR (several files), said by its metavar; no hidden flags; and a `main` that leaves our errors to `cli_exit`.
The conventions are written down in CONTRIBUTING.md ("Command lines").
"""
from __future__ import annotations

import argparse
import ast
import builtins
import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "train", "export", "calibration", "benchmarks", "scripts")

# Exceptions that never reach a user: control flow inside one module.
INTERNAL_EXCEPTIONS = {"RowSkipped": "benchmarks.latency: a row's reason to skip, printed in its table row"}

ARTIFACT_SPELLINGS = {"--onnx", "--engine", "--plan", "--ir", "--xml", "--artifact", "--model-path", "--models"}
DEVICE_WORDS = {"auto", "cpu", "cuda"}
BUILTIN_ERRORS = {n for n, v in vars(builtins).items()  # warnings are not errors
                  if isinstance(v, type) and issubclass(v, BaseException) and not issubclass(v, Warning)}


def _sources() -> List[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def _cli_modules() -> List[str]:
    """Dotted names (scripts: their path) of the files that build an argparse parser."""
    found = []
    for path in _sources():
        if "ArgumentParser(" in path.read_text(encoding="utf-8"):
            rel = path.relative_to(ROOT)
            found.append(str(rel) if rel.parts[0] == "scripts" else ".".join(rel.with_suffix("").parts))
    return found


def _import(name: str):
    if not name.endswith(".py"):
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(Path(name).stem, ROOT / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch_problem(flag: str, action: argparse.Action) -> str:
    """'' when a flag about batches follows the convention, else what is wrong."""
    if flag.endswith("batch-size"):
        return "" if action.nargs is None and action.type is int else f"{flag}: one batch size, type=int"
    if flag.endswith("batch-sizes"):
        return "" if action.nargs in ("+", "*") else f"{flag}: a list of batch sizes, nargs='+'"
    return f"{flag}: a batch size is --batch-size N, a list --batch-sizes N ..., a profile --profile MIN:OPT:MAX"


def _alias_accepted(action: argparse.Action, word: str) -> bool:
    try:
        value = action.type(word) if callable(action.type) else word
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        return False
    return value in (action.choices or ()) and word not in (action.choices or ())


def _shown(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    return [a for a in parser._actions if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def test_the_tree_has_the_entry_points_we_know():
    names = _cli_modules()
    for known in ("runtime.cli", "train.cli", "export.onnx", "calibration.threshold", "benchmarks.latency"):
        assert known in names, names


@pytest.mark.parametrize("name", _cli_modules())
def test_cli_follows_the_conventions(name):
    module = _import(name)
    assert callable(getattr(module, "build_parser", None)), f"{name}: no build_parser()"
    parser = module.build_parser()
    problems = []
    for action in _shown(parser):
        flag = action.option_strings[0] if action.option_strings else action.dest
        if not (action.help or "").strip():
            problems.append(f"{flag}: no help text")
        if set(action.option_strings) & ARTIFACT_SPELLINGS:
            problems.append(f"{flag}: an exported artifact is --model")
        if any("progress" in o for o in action.option_strings) and action.option_strings != ["--no-progress"]:
            problems.append(f"{flag}: the progress switch is --no-progress")
        if "--images" in action.option_strings and (action.type is None or action.type("3") != 3):
            problems.append("--images: is an image count N")
        if "--backend" in action.option_strings:
            from runtime.cli_flags import backend_choices

            if not action.choices or not set(action.choices) <= set(backend_choices()):
                problems.append(f"--backend: choices {action.choices} are not the runtime registry's (+ auto)")
            if any(_alias_accepted(action, w) for w in ("ort", "trt", "ov")):
                problems.append("--backend: takes a short alias; only the registry's names")
        if any("batch" in o for o in action.option_strings):
            problems.append(_batch_problem(flag, action))
        if "--profile" in action.option_strings and action.metavar != "MIN:OPT:MAX":
            problems.append("--profile: metavar MIN:OPT:MAX")
        if "--out" in action.option_strings and action.metavar not in ("FILE", "DIR"):
            problems.append("--out: metavar FILE (one artifact) or DIR (several files)")
        if "--device" in action.option_strings and action.choices and not set(action.choices) <= DEVICE_WORDS:
            problems.append(f"--device: choices {action.choices} are not auto|cpu|cuda")
    problems = [p for p in problems if p]
    hidden = [a.option_strings[0] for a in parser._actions if a.help is argparse.SUPPRESS and a.option_strings]
    if hidden:
        problems.append(f"{', '.join(hidden)}: hidden flags (aliases of old spellings) are not kept")
    every = {o for a in parser._actions for o in a.option_strings}
    if every & {"--quiet", "--silent"}:
        problems.append("--quiet: progress off is --no-progress")
    main_source = inspect.getsource(module.main)
    if "cli_exit(" not in main_source or "except" in main_source:
        problems.append("main: `return cli_exit(lambda: _run(args))`, no catch of its own")
    assert not problems, f"{name}: " + "; ".join(problems)


def _exception_classes() -> Dict[str, Set[str]]:
    """Every class of the tree -> the names of its bases (last component: `errors.Foo` -> `Foo`)."""
    bases: Dict[str, Set[str]] = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases}
                bases.setdefault(node.name, set()).update(names)
    return bases


def _ancestors(name: str, bases: Dict[str, Set[str]]) -> Set[str]:
    seen, todo = set(), [name]
    while todo:
        for base in bases.get(todo.pop(), ()):
            if base not in seen:
                seen.add(base)
                todo.append(base)
    return seen


def _errors_without_root() -> List[str]:
    """Classes of the tree that are exceptions (a builtin exception among their ancestors) without our root."""
    bases = _exception_classes()
    return sorted(name for name in bases if name != "InspectError" and _ancestors(name, bases) & BUILTIN_ERRORS
                  and "InspectError" not in _ancestors(name, bases) and name not in INTERNAL_EXCEPTIONS)


def test_every_error_derives_from_inspect_error():
    assert len(_exception_classes()) > 10  # the scan finds the tree's exception classes
    missing = _errors_without_root()
    assert not missing, f"these errors do not derive from runtime.errors.InspectError: {', '.join(missing)}"


def test_our_error_classes_derive_from_the_root():
    from calibration.errors import CalibrationError
    from export.errors import ExportError
    from runtime.errors import InspectError, OutputError, RuntimeInspectError
    from train.errors import ConfigError, DataError, RunError

    for cls in (CalibrationError, ExportError, OutputError, RuntimeInspectError, ConfigError, DataError, RunError):
        assert issubclass(cls, InspectError), cls


def test_writing_turns_an_os_error_into_an_output_error(tmp_path):
    from runtime.errors import OutputError, cli_exit, writing

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write --out .*choose a writable path"):
        with writing(f"--out {blocker / 'sub'}"):
            (blocker / "sub").mkdir()

    def run():
        with writing("x.json"):
            raise PermissionError(13, "Permission denied", "x.json")

    assert cli_exit(run) == 2


def test_shared_flags_take_the_registry_and_the_device_words():
    from runtime.backends import REGISTRY
    from runtime.cli_flags import add_backend, add_device

    p = argparse.ArgumentParser()
    add_backend(p)
    add_device(p, torch=True)
    assert p.parse_args(["--backend", "openvino", "--device", "cuda:1"]).device == "cuda:1"
    assert p.get_default("backend") == "auto" and set(REGISTRY) < set(p._option_string_actions["--backend"].choices)
    for bad in (["--backend", "ort"], ["--device", "gpu"]):
        with pytest.raises(SystemExit):
            p.parse_args(bad)
