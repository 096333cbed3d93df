"""List the Python names each TensorRT release binds, from the pybind11 sources of NVIDIA/TensorRT.

    python scripts/trt_binding_names.py /path/to/TensorRT.git 8.5.2 v8.6.1 v10.0.1 v10.3.0 v10.13.3 v11.0 v11.1 \
        > tests/data/tensorrt_binding_names.tsv

Reads `python/src/**/*.cpp` and the package `__init__.py` of each git tag (`git show TAG:PATH`, no checkout) and
writes one line per name, `Class.member<TAB>mask`, where the mask has one 0/1 character per version in the
header. Classes carry their bases' members (ICudaEngine's `name` as well as IConvolutionLayer's ILayer members),
enums carry `name` and `value`, and `tensorrt.X` lines are the module's own names. Preprocessor branches are
taken as a Linux build of full TensorRT takes them (EXPORT_ALL_BINDINGS=1, ENABLE_INETWORK_SERIALIZE=0, a
current pybind11); a condition this does not know keeps both branches.

Used by tests/export/test_trt_api_contract.py, which checks every TensorRT attribute the toolkit uses against it.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from typing import Dict, List, Set, Tuple

DEFINES = {"EXPORT_ALL_BINDINGS": 1, "ENABLE_INETWORK_SERIALIZE": 0, "PYBIND11_VERSION_MAJOR": 2,
           "PYBIND11_VERSION_MINOR": 13}
UNDEFINED = {"_WIN32", "WIN32_LEAN_AND_MEAN", "_MSC_VER"}
MEMBER_KINDS = ("def", "def_static", "def_property", "def_property_readonly", "def_readwrite", "def_readonly",
                "def_property_static", "def_property_readonly_static", "value")
DECL = re.compile(r"py::(class_|enum_)\s*<(.*?)>\s*(\w+)?\s*[({]\s*(\w+)\s*,\s*\"(\w+)\"", re.S)
MEMBER = re.compile(r"\.\s*(" + "|".join(MEMBER_KINDS) + r")\s*\(\s*\"(\w+)\"")
MODULE_MEMBER = re.compile(r"\bm\s*\.\s*(?:def|attr)\s*\(\s*\"(\w+)\"")


def git_show(repo: str, tag: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"{tag}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def git_files(repo: str, tag: str) -> List[str]:
    out = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", tag, "python"], check=True,
                         capture_output=True, text=True).stdout.split()
    return [p for p in out if (p.startswith("python/src/") and p.endswith(".cpp"))
            or p in ("python/packaging/tensorrt/__init__.py", "python/packaging/bindings_wheel/tensorrt/__init__.py")]


def _condition(expr: str):
    """True/False for a preprocessor condition this knows, None otherwise."""
    py = re.sub(r"defined\s*\(\s*(\w+)\s*\)", lambda m: "0" if m.group(1) in UNDEFINED else
                ("1" if m.group(1) in DEFINES else "?"), expr)
    py = py.replace("||", " or ").replace("&&", " and ")
    py = re.sub(r"!(?!=)", " not ", py)
    py = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: m.group(0) if m.group(0) in ("or", "and", "not") else
                str(DEFINES.get(m.group(0), "?")), py)
    if "?" in py:
        return None
    try:
        return bool(_evaluate(ast.parse(py.strip(), mode="eval").body))
    except (SyntaxError, ValueError):
        return None


_COMPARE = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
            ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b}


def _evaluate(node):
    """The value of a preprocessor condition already turned into digits and and/or/not/comparisons (no eval)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BoolOp):
        values = [_evaluate(v) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _evaluate(node.operand)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        return _COMPARE[type(node.ops[0])](_evaluate(node.left), _evaluate(node.comparators[0]))
    raise ValueError(f"unsupported preprocessor expression {ast.dump(node)}")


def preprocess(text: str) -> str:
    """Drop comments and the preprocessor branches a Linux build of full TensorRT does not compile."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    keep: List[Tuple[bool, bool]] = []  # (this branch kept, some branch of this #if already taken)
    out = []
    for line in text.split("\n"):
        s = line.strip()
        directive = re.match(r"#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)", s)
        if directive:
            kind, rest = directive.group(1), directive.group(2).strip()
            if kind in ("if", "ifdef", "ifndef"):
                cond = _condition(rest if kind == "if" else
                                  (f"defined({rest})" if kind == "ifdef" else f"!defined({rest})"))
                taken = cond is not False
                keep.append((taken, bool(cond)))
            elif kind == "elif" and keep:
                cond = _condition(rest)
                _, done = keep[-1]
                keep[-1] = (not done and cond is not False, done or bool(cond))
            elif kind == "else" and keep:
                _, done = keep[-1]
                keep[-1] = (not done, True)
            elif kind == "endif" and keep:
                keep.pop()
            continue
        if all(k for k, _ in keep):
            out.append(line)
    return "\n".join(out)


def _statement_end(text: str, start: int) -> int:
    """Index of the `;` that ends the statement begun before `start` (outside brackets and strings)."""
    depth, i, n = 0, start, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == ";" and depth <= 0:
            return i
        i += 1
    return n


def _template_types(args: str) -> List[str]:
    """'ILayer, std::unique_ptr<ILayer, py::nodelete>' -> ['ILayer', 'std::unique_ptr<...>'] (top level)."""
    parts, depth, cur = [], 0, ""
    for ch in args:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return [p.split("::")[-1] for p in parts if p]


def names_of(repo: str, tag: str) -> Set[str]:
    members: Dict[str, Set[str]] = {}
    bases: Dict[str, List[str]] = {}
    cpp_to_py: Dict[str, str] = {}
    module: Set[str] = set()
    enums: Set[str] = set()
    exported: List[Tuple[str, str]] = []  # (enum, parent class) whose values are also the parent's
    sources = {p: git_show(repo, tag, p) for p in git_files(repo, tag)}
    cpp = {p: preprocess(t) for p, t in sources.items() if p.endswith(".cpp")}
    decls = []
    for text in cpp.values():
        for m in DECL.finditer(text):
            kind, targs, var, scope, pyname = m.groups()
            types = _template_types(targs)
            cpp_to_py[types[0]] = pyname
            decls.append((text, m, kind, types, var, scope, pyname))
    var_to_py: Dict[str, str] = {}
    for text, m, kind, types, var, scope, pyname in decls:
        owner = pyname if scope == "m" else var_to_py.get(scope, scope)
        if var:
            var_to_py[var] = pyname
        if scope == "m":
            module.add(pyname)
        else:  # nested: ILogger.Severity
            members.setdefault(owner, set()).add(pyname)
        members.setdefault(pyname, set())
        bases[pyname] = [cpp_to_py[t] for t in types[1:] if t in cpp_to_py and cpp_to_py[t] != pyname]
        if kind == "enum_":
            enums.add(pyname)
        end = _statement_end(text, m.end())
        body = text[m.end():end]
        members[pyname].update(name for _, name in MEMBER.findall(body))
        if kind == "enum_" and "export_values" in body and scope != "m":
            exported.append((pyname, owner))
    for text in cpp.values():  # `binding.def(...)` statements on a named class variable
        for var, pyname in var_to_py.items():
            for m in re.finditer(r"\b" + re.escape(var) + r"\s*\.\s*(?:" + "|".join(MEMBER_KINDS) + r")\s*\(", text):
                body = text[m.start():_statement_end(text, m.start())]
                members[pyname].update(name for _, name in MEMBER.findall(body))
        module.update(MODULE_MEMBER.findall(text))
    for enum, parent in exported:
        members[parent].update(members[enum])
    for enum in enums:
        members[enum].update(("name", "value"))
    for p, t in sources.items():
        if p.endswith("__init__.py"):
            module.update(re.findall(r"^(?:def|class)\s+(\w+)", t, flags=re.M))
            module.update(re.findall(r"^(\w+)\s*=", t, flags=re.M))

    def flat(cls: str, seen=()) -> Set[str]:
        out = set(members.get(cls, ()))
        for b in bases.get(cls, []):
            if b not in seen:
                out |= flat(b, seen + (cls,))
        return out

    names = {f"tensorrt.{n}" for n in module}
    for cls in members:
        names.update(f"{cls}.{n}" for n in flat(cls))
    return names


def main(argv: List[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    repo, tags = argv[0], argv[1:]
    per_tag = [names_of(repo, t) for t in tags]
    versions = [t.lstrip("v") for t in tags]
    print(f"# TensorRT Python binding names per release, read by scripts/trt_binding_names.py from the pybind11 "
          f"sources of github.com/NVIDIA/TensorRT (python/src, package __init__.py)")
    print("# versions\t" + " ".join(versions))
    for name in sorted(set().union(*per_tag)):
        print(f"{name}\t" + "".join("1" if name in s else "0" for s in per_tag))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
