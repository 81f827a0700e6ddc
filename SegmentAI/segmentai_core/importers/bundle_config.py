"""A MONAI bundle config read as data, never run.

MONAI's config language is a small program: ``@id#path`` references another entry, ``$...`` is a
Python expression (MONAI passes it to ``eval``), ``%file#id`` a macro from another file, and
``_target_`` names any class. :class:`BundleConfig` follows references inside the one config and
evaluates, **by hand over the parsed syntax tree**, only expressions made of literals: constants,
lists, ``A if @flag else B``, ``not``, unary minus and ``+`` of strings or numbers (the Model Zoo's
``"$[1.5, 1.5, 1.5] if @displayable_configs#highres else [3.0, 3.0, 3.0]"`` and
``"$@bundle_root + '/models/model.pt'"``). Any name, call, attribute, subscript, lambda or
comprehension (``$__import__('os')...``, ``$torch.device(...)``) is refused with one line: nothing of
the bundle is executed or imported.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, Dict

from ..errors import ModelError

__all__ = ["BundleConfig", "read_config", "target_name"]

_REFERENCE = re.compile(r"@([A-Za-z_][\w#]*)")
_MAX_STEPS = 50  # references followed and expressions evaluated for one value (cycles end here)


def read_config(path: Path) -> Dict[str, Any]:
    """A bundle's JSON or YAML config as plain data (YAML with ``safe_load``: no Python tags)."""
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(path.read_text(encoding="utf-8"))
        return json.loads(path.read_text(encoding="utf-8"))
    except ImportError as error:
        raise ModelError(f"{path.name}: reading YAML bundle configs needs PyYAML") from error
    except (OSError, ValueError) as error:
        raise ModelError(f"{path.name}: cannot read it ({str(error).splitlines()[0]})") from error
    except RecursionError:
        raise ModelError(f"{path.name}: nested too deeply to be a bundle config") from None
    except Exception as error:  # yaml.YAMLError: a Python tag (!!python/object...) or broken YAML
        if type(error).__module__.split(".")[0] != "yaml":
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path.name}: not plain YAML data (tags such as !!python/... are refused; {first})") from None


def target_name(item: Any) -> str:
    """The class name a config item's ``_target_`` names (its last dotted part), or ''."""
    return str(item.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(item, dict) else ""


class BundleConfig:
    """``data`` (an ``inference.json``) with its references and literal expressions resolved on request."""

    def __init__(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise ModelError("inference config: not a JSON object")
        self.data = data

    def get(self, key: str, default: Any = None) -> Any:
        """The entry ``key`` with ``@`` references followed (items inside it are left as they are)."""
        return self.resolve(self.data.get(key, default))

    def resolve(self, value: Any, steps: int = 0) -> Any:
        """Follow a whole-value ``@id#path`` reference (repeatedly); anything else is returned as it is."""
        while isinstance(value, str) and _REFERENCE.fullmatch(value):
            steps += 1
            if steps > _MAX_STEPS:
                raise ModelError(f"inference config: the reference {value!r} does not end (a cycle?)")
            value = self._lookup(value[1:])
        return value

    def _lookup(self, path: str) -> Any:
        node: Any = self.data
        for part in path.split("#"):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise ModelError(f"inference config: the reference '@{path}' names no entry")
        return node

    def literal(self, value: Any, where: str, steps: int = 0) -> Any:
        """``value`` as plain data: references followed, literal ``$`` expressions evaluated; refused otherwise."""
        if steps > _MAX_STEPS:
            raise ModelError(f"inference config: {where} does not resolve to a value (a reference cycle?)")
        value = self.resolve(value, steps)
        if isinstance(value, str) and value.startswith("$"):
            return self._expression(value, where, steps + 1)
        if isinstance(value, str) and value[:1] in ("@", "%"):
            raise ModelError(f"inference config: {where} = {value!r} is an expression; SegmentAI imports literal "
                             "values and references to them")
        if isinstance(value, list):
            return [self.literal(v, where, steps) for v in value]
        if isinstance(value, dict):
            return {k: self.literal(v, f"{where}.{k}", steps) for k, v in value.items()}
        return value

    def _expression(self, text: str, where: str, steps: int) -> Any:
        references: Dict[str, str] = {}

        def placeholder(match: re.Match) -> str:
            name = f"__segmentai_ref_{len(references)}__"
            references[name] = match.group(0)
            return name

        source = _REFERENCE.sub(placeholder, text[1:]).strip()
        refused = ModelError(f"inference config: {where} = {text!r} is an expression; SegmentAI imports literal "
                             "values (and 'A if @flag else B', '+' of literals)")
        try:
            tree = ast.parse(source, mode="eval")
        except (SyntaxError, ValueError, RecursionError):
            raise refused from None

        def evaluate(node: ast.AST) -> Any:
            if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
                return node.value
            if isinstance(node, (ast.List, ast.Tuple)):
                return [evaluate(item) for item in node.elts]
            if isinstance(node, ast.Name) and node.id in references:
                return self.literal(references[node.id], where, steps + 1)
            if isinstance(node, ast.IfExp):
                return evaluate(node.body) if _truth(evaluate(node.test)) else evaluate(node.orelse)
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                return not _truth(evaluate(node.operand))
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
                operand = evaluate(node.operand)
                if isinstance(operand, (int, float)) and not isinstance(operand, bool):
                    return -operand
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
                left, right = evaluate(node.left), evaluate(node.right)
                if isinstance(left, str) and isinstance(right, str):
                    return left + right
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
                    return left + right
            raise refused

        try:
            return evaluate(tree.body)
        except RecursionError:
            raise refused from None


def _truth(value: Any) -> bool:
    if not isinstance(value, (bool, int, float, str, list, type(None))):  # pragma: no cover - literals only
        raise ModelError("inference config: a condition is not a literal")
    return bool(value)
