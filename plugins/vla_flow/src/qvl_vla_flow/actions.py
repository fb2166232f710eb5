"""The action vector: what one frame's mouse and keyboard input becomes, and back.

One frame's action is a vector in ``[-1, 1]``:

* ``mouse_x, mouse_y``: the cursor position normalised by the canvas, ``-1`` at the left / top
  edge, ``+1`` at the right / bottom edge;
* ``mouse_dx, mouse_dy``: its change since the previous frame, in the same units (clipped);
* ``button_left, button_right, button_middle``: ``+1`` when that button was clicked during the
  frame, else ``-1``;
* ``key_<NAME>`` for each key of the vocabulary: ``+1`` when the key was held at any time during
  the frame (a tap between two frames counts), else ``-1``.

Binary channels are ``-1 / +1`` rather than ``0 / 1`` so that every dimension has the same range as
the Gaussian noise the flow starts from; they are executed by thresholding at 0.

Key codes are Windows virtual-key codes (``vk``), what the capture tool writes. The default
vocabulary is the keys of Miniworld's manual control (``miniworld/manual_control.py``): arrows
to move and turn, Page Up / Page Down to pick up and drop, Enter for done.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

# Windows virtual-key codes by name (winuser.h), the ones a game is played with
VK_CODES: dict[str, int] = {
    "BACK": 0x08, "TAB": 0x09, "RETURN": 0x0D, "SHIFT": 0x10, "CONTROL": 0x11, "MENU": 0x12,
    "ESCAPE": 0x1B, "SPACE": 0x20, "PRIOR": 0x21, "NEXT": 0x22, "END": 0x23, "HOME": 0x24,
    "LEFT": 0x25, "UP": 0x26, "RIGHT": 0x27, "DOWN": 0x28, "DELETE": 0x2E,
    **{chr(c): c for c in range(ord("0"), ord("9") + 1)},
    **{chr(c): c for c in range(ord("A"), ord("Z") + 1)},
    "LSHIFT": 0xA0, "RSHIFT": 0xA1, "LCONTROL": 0xA2, "RCONTROL": 0xA3,
}
VK_NAMES: dict[int, str] = {code: name for name, code in VK_CODES.items()}

# Miniworld's manual control: key -> the env's action (MiniWorldEnv.Actions)
MINIWORLD_KEYS: dict[str, str] = {
    "LEFT": "turn_left", "RIGHT": "turn_right", "UP": "move_forward", "DOWN": "move_back",
    "PRIOR": "pickup", "NEXT": "drop", "RETURN": "done",
}
DEFAULT_KEYS: tuple[str, ...] = ("UP", "DOWN", "LEFT", "RIGHT", "PRIOR", "NEXT", "RETURN")

MOUSE_DIMS = ("mouse_x", "mouse_y", "mouse_dx", "mouse_dy")
BUTTONS = ("left", "right", "middle")  # bits 0, 1, 2 of a mouseclick's `buttons` mask
PRESSED, RELEASED = 1.0, -1.0


def _known_keys(instance: ActionSpace, attribute: attrs.Attribute, value: Sequence[str]) -> None:
    unknown = [name for name in value if name not in VK_CODES]
    if unknown:
        raise ValueError(f"unknown key name(s) {unknown}: expected Windows virtual-key names such as "
                         f"{', '.join(list(VK_CODES)[:12])}, ... or letters/digits")
    if len(set(value)) != len(value):
        raise ValueError(f"key vocabulary {list(value)} names a key twice")


@attrs.frozen
class ActionSpace:
    """The layout of the action vector for a key vocabulary (names from :data:`VK_CODES`)."""

    keys: tuple[str, ...] = attrs.field(default=DEFAULT_KEYS, converter=tuple, validator=_known_keys)

    @property
    def names(self) -> list[str]:
        return [*MOUSE_DIMS, *(f"button_{b}" for b in BUTTONS), *(f"key_{k}" for k in self.keys)]

    @property
    def dim(self) -> int:
        return len(MOUSE_DIMS) + len(BUTTONS) + len(self.keys)

    @property
    def continuous(self) -> list[int]:
        """Indices of the mouse dimensions (regressed); the others are binary channels."""
        return list(range(len(MOUSE_DIMS)))

    @property
    def binary(self) -> list[int]:
        return list(range(len(MOUSE_DIMS), self.dim))

    @property
    def key_indices(self) -> list[int]:
        start = len(MOUSE_DIMS) + len(BUTTONS)
        return list(range(start, self.dim))

    @property
    def vk_codes(self) -> list[int]:
        return [VK_CODES[k] for k in self.keys]

    def key_index(self, vk: int) -> int | None:
        """Position of a virtual-key code in the vector, or None when it is not in the vocabulary."""
        name = VK_NAMES.get(vk)
        if name is None or name not in self.keys:
            return None
        return len(MOUSE_DIMS) + len(BUTTONS) + self.keys.index(name)

    def pressed_keys(self, action: Sequence[float]) -> list[str]:
        """Names of the keys an action vector presses (value above 0), strongest first."""
        values = [(float(action[i]), name) for i, name in zip(self.key_indices, self.keys)]
        return [name for value, name in sorted(values, reverse=True) if value > 0]

    def to_dict(self) -> dict[str, object]:
        return {"names": self.names, "keys": list(self.keys), "vk_codes": self.vk_codes,
                "continuous": self.continuous, "binary": self.binary}


def normalise(value: float, size: int) -> float:
    """Pixel coordinate ``0..size-1`` to ``[-1, 1]``."""
    if size <= 1:
        return 0.0
    return max(-1.0, min(1.0, 2.0 * value / (size - 1) - 1.0))


def miniworld_action(space: ActionSpace, action: Sequence[float]) -> str | None:
    """The Miniworld action (``Actions`` member name) an action vector executes, or None for none.

    The strongest pressed key that Miniworld's manual control knows wins; mouse and buttons do
    nothing in Miniworld.
    """
    for name in space.pressed_keys(action):
        if name in MINIWORLD_KEYS:
            return MINIWORLD_KEYS[name]
    return None
