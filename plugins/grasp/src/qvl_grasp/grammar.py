"""The grasp answer's language, ``"cx cy theta w h"``, as an EBNF grammar for :mod:`qvl.decoding`.

Exactly five integers without leading zeros, each in its range, one space apart; decoding then
ends the turn. xgrammar compiles it against the tokenizer's real vocabulary and masks every token
that would leave the language (the seed's digits-and-space mask still let "12 4" or "99999"
through, which is why it had invalid outputs at all).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from qvl_grasp.quantizer import ANGLE_BINS, COORD_MAX

if TYPE_CHECKING:
    from qvl.decoding import Constraint


def integer_rule(high: int) -> str:
    """An EBNF alternative matching exactly the integers 0..high, written without leading zeros."""
    digits = str(high)
    n = len(digits)
    alternatives = ['"0"'] if high >= 0 else []
    # every shorter length is free: [1-9], [1-9][0-9], ...
    alternatives += ["[1-9]" + " [0-9]" * (k - 1) for k in range(1, n)]
    # n digits, at most high: equal to high up to position i, smaller at i, anything after
    for i, d in enumerate(int(c) for c in digits):
        low = 1 if i == 0 else 0
        if d - 1 >= low:
            head = [f'"{digits[:i]}"'] if i else []
            alternatives.append(" ".join(head + [f"[{low}-{d - 1}]"] + ["[0-9]"] * (n - i - 1)))
    if high > 0:
        alternatives.append(f'"{digits}"')
    return "(" + " | ".join(alternatives) + ")"


def grasp_grammar() -> str:
    """The five-field answer grammar in xgrammar's EBNF."""
    coord, angle = integer_rule(COORD_MAX), integer_rule(ANGLE_BINS - 1)
    return "\n".join([
        'root ::= coord " " coord " " angle " " coord " " coord',
        f"coord ::= {coord}",
        f"angle ::= {angle}",
    ])


@functools.cache
def grasp_constraint() -> Constraint:
    """The grammar as a decoding constraint (built on first use: it imports xgrammar)."""
    from qvl.decoding import Constraint

    return Constraint.ebnf(grasp_grammar())
