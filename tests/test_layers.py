"""The package reads bottom-up: each module imports only from its own layer and the layers below it,
no module imports in a cycle, and the light layers never import jax.

The import graph is read from the source (ast), so an import inside a function counts as much as
one at the top. To see it and check it by hand: `python tests/test_layers.py` prints every module's
imports of the package and "no cycle" (or the cycle).
"""

import ast
import os
import subprocess
import sys

PACKAGE = "infinite_compute"
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", PACKAGE)
# bottom to top: a module may import from its own layer and the ones before it
LAYERS = ("runtime", "science", "study", "data", "model", "outputs", "cli")
HEAVY = ("jax", "jaxlib", "haliax", "equinox", "levanter", "optax")
# what the lightest layers never import (lm-eval, transformers and torch take seconds)
LIGHT_NEVER = HEAVY + ("lm_eval", "transformers", "torch")


def modules() -> dict[str, str]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for folder, _, files in os.walk(SRC):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(SRC))[: -len(".py")]
                name = rel.replace(os.sep, ".")
                out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = os.path.join(folder, f)
    return out


def imports(name: str, path: str, known: set[str]) -> list[tuple[str, int, bool]]:
    """(module of the package imported, line, inside a function) for each import in `path`; an
    import inside a function counts as one at the top unless a comment at it or just above it says
    it keeps jax out (a cli module's light commands)."""
    is_pkg = path.endswith("__init__.py")
    tree = ast.parse(open(path).read())
    funcs = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        lines = open(path).read().splitlines()
        for t in targets:
            if t == PACKAGE or t.startswith(PACKAGE + "."):
                inner = id(node) in funcs
                said = "jax" in " ".join(lines[max(0, node.lineno - 4): node.lineno])
                out.append((t, node.lineno, inner and not (said and name.startswith(f"{PACKAGE}.cli.")
                                                            and t.startswith(f"{PACKAGE}.model"))))
    return out


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in sorted(mods.items())}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def find_cycle(g: dict[str, list]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t, _, _ in g.get(m, []):
            if t == m or t not in g:
                continue
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (c := visit(t)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in g:
        if m not in state and (c := visit(m)):
            return c
    return None


def test_every_module_lives_in_a_layer():
    top = {m for m in modules() if m.count(".") == 1}
    assert top == {f"{PACKAGE}.{x}" for x in (*LAYERS, "__main__")}, top


def test_imports_point_down_the_layers():
    wrong = [f"{m}:{line} imports {t}" for m, deps in graph().items() if layer(m) is not None
             for t, line, _ in deps if layer(t) is not None and layer(t) > layer(m)]
    assert not wrong, "\n".join(wrong)


def test_the_import_graph_has_no_cycle():
    g = graph()
    assert find_cycle(g) is None, " -> ".join(find_cycle(g))


def test_no_import_of_the_package_hides_inside_a_function():
    hidden = [f"{m}:{line} imports {t} inside a function" for m, deps in graph().items() for t, line, inner in deps
              if inner]
    assert not hidden, "\n".join(hidden)


def test_a_layer_fails_this_check_when_it_imports_upwards(tmp_path):
    """The checks above can fail: a science module that imports the plan is caught, and so is a cycle."""
    g = graph()
    g["infinite_compute.science.fits"] = g["infinite_compute.science.fits"] + [("infinite_compute.study.plan", 1, True)]
    assert layer("infinite_compute.study.plan") > layer("infinite_compute.science.fits")
    g["infinite_compute.study.specs"] = g["infinite_compute.study.specs"] + [("infinite_compute.study.plan", 1, False)]
    assert find_cycle(g) is not None


def imported_by(modules_: list[str], heavy: tuple[str, ...]) -> list[str]:
    """The `heavy` packages a fresh interpreter has imported once it imported `modules_`."""
    code = ("import importlib, sys\n"
            f"for m in {modules_!r}:\n    importlib.import_module(m)\n"
            f"print(sorted({{k.split('.')[0] for k in sys.modules if k.split('.')[0] in {heavy!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(SRC)}).stdout
    return eval(out)


def test_the_study_science_and_runtime_layers_do_not_import_jax():
    light = [m for m in modules() if layer(m) is not None and LAYERS[layer(m)] in ("runtime", "science", "study")]
    assert len(light) >= 12
    assert imported_by(light, LIGHT_NEVER) == []
    # the check sees an import: the model layer does import jax
    assert "jax" in imported_by(["infinite_compute.model.shapes"], HEAVY)


def test_the_light_commands_modules_do_not_import_jax():
    """A job of a command that is not a jax command (a table, a figure, the corpus) imports its cli
    module only (cli.main): that module must not bring jax in."""
    from infinite_compute.cli import COMMANDS, JAX_COMMANDS

    light = sorted({f"{PACKAGE}.cli.{m}" for c, (m, _, _) in COMMANDS.items() if c not in JAX_COMMANDS})
    assert f"{PACKAGE}.cli.cpt" in light and f"{PACKAGE}.cli.distill" in light
    assert imported_by([f"{PACKAGE}.cli"] + light, HEAVY) == []


if __name__ == "__main__":
    g = graph()
    for m, deps in g.items():
        print(m, "->", ", ".join(sorted({t for t, _, _ in deps})) or "-")
    c = find_cycle(g)
    print("cycle: " + " -> ".join(c) if c else "no cycle")
