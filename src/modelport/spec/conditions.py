"""An AnalysisTemplate's `successCondition` / `failureCondition`: Argo Rollouts' expressions on
`result`, a small safe subset of them.

    check = condition("result <= 0.01 && !isNaN(result)")    # ValueError names what is wrong
    check(0.002)                                              # True

Numbers, `result`, comparisons (< <= > >= == !=), `&& || !` (or `and or not`), `+ - * /`,
parentheses, and the functions `isNaN(x)`, `isInf(x)`, `asFloat(x)`, `abs(x)`, `min(a, b)`,
`max(a, b)`. Parsed once by Python's `ast` and walked over a whitelist: nothing else runs.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "isNaN": math.isnan, "isInf": math.isinf, "asFloat": float, "abs": abs, "min": min, "max": max,
}  # fmt: skip
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}  # fmt: skip
_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}  # fmt: skip
MAX_LENGTH = 500


def _python(text: str) -> str:
    """Argo's `&&`, `||` and `!` as Python's words (`!=` stays)."""
    text = text.replace("&&", " and ").replace("||", " or ")
    return re.sub(r"!(?!=)", " not ", text)


def _check(node: ast.AST) -> None:
    allowed = (
        ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
        ast.Compare, ast.BinOp, ast.Constant, ast.Name, ast.Load, ast.Call, *_COMPARE, *_ARITHMETIC,
    )  # fmt: skip
    for child in ast.walk(node):
        if not isinstance(child, allowed):
            raise ValueError(f"{type(child).__name__} is not allowed (numbers, result, comparisons, "
                             "&& || !, + - * /, and isNaN/isInf/asFloat/abs/min/max)")  # fmt: skip
        if isinstance(child, ast.Name) and child.id != "result" and child.id not in _FUNCTIONS:
            raise ValueError(f"unknown name {child.id!r}: the value is `result`")
        if isinstance(child, ast.Constant) and not isinstance(child.value, int | float):
            raise ValueError(f"{child.value!r}: only numbers may be written")
        if isinstance(child, ast.Call) and not (
            isinstance(child.func, ast.Name) and child.func.id in _FUNCTIONS and not child.keywords
        ):
            raise ValueError(f"only {', '.join(_FUNCTIONS)} may be called")


def _eval(node: ast.AST, result: float) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, result)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return result
    if isinstance(node, ast.BoolOp):
        values = (bool(_eval(v, result)) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, result)
        if isinstance(node.op, ast.Not):
            return not value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return _ARITHMETIC[type(node.op)](_eval(node.left, result), _eval(node.right, result))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, result)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, result)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)  # _check saw to it
    return _FUNCTIONS[node.func.id](*(_eval(a, result) for a in node.args))


def condition(text: str) -> Callable[[float], bool]:
    """The expression as a function of `result`; ValueError says why one is not allowed."""
    if len(text) > MAX_LENGTH:
        raise ValueError(f"at most {MAX_LENGTH} characters")
    try:
        tree = ast.parse(_python(text).strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an expression: {exc.msg}") from None
    _check(tree)

    def check(result: float) -> bool:
        try:
            return bool(_eval(tree, result))
        except (ArithmeticError, TypeError, ValueError):  # 1/0, min() of nothing: not met
            return False

    return check
