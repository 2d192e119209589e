"""Re-evaluating the arithmetic a reasoning step claims ("3 * 4 = 13").

Only explicit ``expression = number`` claims with at least one operator are
checked; "20% of 50 = 10" style prose is left alone rather than misjudged.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from fractions import Fraction

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_NUMBER = r"\d[\d,]*(?:\.\d+)?|\.\d+"
# An arithmetic expression: numbers, operators, parentheses, currency, percent.
_EXPR = re.compile(
    r"(?:[($\s]*-?\$?\s*(?:" + _NUMBER + r")\s*%?[)\s]*)"
    r"(?:(?:[-+*/×x÷·]|\\times|\\cdot|\\div)\s*[($\s]*-?\$?\s*(?:" + _NUMBER + r")\s*%?[)\s]*)+"
    r"=\s*\$?\s*(-?(?:" + _NUMBER + r"))"
)


@dataclass(frozen=True)
class Claim:
    expression: str
    stated: Fraction
    actual: Fraction

    @property
    def ok(self) -> bool:
        return _matches(self.stated, self.actual)

    def describe(self) -> str:
        return f"{self.expression} = {fmt(self.stated)}"


def fmt(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    return f"{float(x):.4f}".rstrip("0").rstrip(".")


def _matches(stated: Fraction, actual: Fraction) -> bool:
    if stated == actual:
        return True
    # Accept the rounding the writer chose: "10 / 3 = 3.33", "7 / 2 = 3.5".
    text = fmt(stated)
    decimals = len(text.split(".")[1]) if "." in text else 0
    return round(float(actual), max(decimals, 0)) == float(stated) or abs(float(actual) - float(stated)) < 1e-6


def _to_python(expr: str) -> str:
    e = expr.replace("\\times", "*").replace("\\cdot", "*").replace("\\div", "/")
    e = e.replace("×", "*").replace("·", "*").replace("÷", "/").replace("$", "").replace(",", "")
    e = re.sub(r"(?<=[\d)\s])x(?=[\s\d(])", "*", e)
    e = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", e)
    return e


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return Fraction(str(node.value))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    raise ValueError("not arithmetic")


def evaluate(expr: str) -> Fraction | None:
    try:
        return _eval(ast.parse(_to_python(expr).strip(), mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, TypeError):
        return None


_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def binary(expr: str) -> tuple[Fraction, str, Fraction] | None:
    """``(a, op, b)`` for an expression of one operator between two numbers ("6 + 2", "$3 x 4"), else None."""
    try:
        node = ast.parse(_to_python(expr).strip(), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(node, ast.BinOp) or type(node.op) not in _SYMBOL:
        return None
    try:
        return _eval(node.left), _SYMBOL[type(node.op)], _eval(node.right)
    except (ValueError, ZeroDivisionError, TypeError):
        return None


def claims(step: str) -> list[Claim]:
    """Every checkable ``a op b = c`` claim in a step, in order."""
    text = re.sub(r"<<[^<>]*>>", "", step)
    out = []
    for m in _EXPR.finditer(text):
        lhs = m.group(0)[: m.group(0).rfind("=")].strip()
        if lhs.count("(") != lhs.count(")"):
            lhs = lhs.strip("()").strip()
        actual = evaluate(lhs)
        try:
            stated = Fraction(m.group(1).replace(",", ""))
        except ValueError:
            continue
        if actual is not None:
            out.append(Claim(expression=" ".join(lhs.replace("$", "").split()), stated=stated, actual=actual))
    return out


def first_slip(step: str) -> Claim | None:
    for c in claims(step):
        if not c.ok:
            return c
    return None
