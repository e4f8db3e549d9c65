"""Share of src/noisyseg's lines that are docstrings (module docstrings, and all docstrings).

    python tools/docstring_share.py [SRC]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def main(src: str = "src/noisyseg") -> int:
    total = module_doc = all_doc = 0
    for path in sorted(Path(src).rglob("*.py")):
        text = path.read_text()
        total += len(text.splitlines())
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    n = body[0].end_lineno - body[0].lineno + 1
                    all_doc += n
                    if isinstance(node, ast.Module):
                        module_doc += n
    print(f"{total} lines in {src}; module docstrings {module_doc} ({module_doc / total:.1%}); "
          f"all docstrings {all_doc} ({all_doc / total:.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
