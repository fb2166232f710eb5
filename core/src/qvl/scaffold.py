"""``qvl new-plugin NAME``: write a plugin package that installs, trains and passes its own tests.

A new plugin author copies what works. Generating a complete package (pyproject with the entry
point, a thin hook table, replaceable data, a test through :mod:`qvl.testing`) gets them a green
``pytest`` before they change a line, and the core's tests run that generated package, so the
template cannot rot. Templates are plain files under ``qvl/templates`` filled with
:class:`string.Template` (``$name``), which leaves the braces of Python and TOML alone.
"""

from __future__ import annotations

import re
import string
from importlib import resources
from pathlib import Path

from qvl.errors import UserError

KINDS = ("sft", "head")
_NAME = re.compile(r"[A-Za-z0-9_-]+")

# what each kind tells its user in the generated README
_DOCS = {
    "sft": {
        "summary": "the language-model head learns to answer a question about an image "
                   "(masked-answer SFT; decoding constrained to the valid answers).",
        "target_doc": 'the `"answer"` text the model learns to write (list the valid answers in the '
                      "config's `answers`: decoding can write nothing else)",
        "hooks_doc": "register_tasks and build_dataset written here; build_collator, loss, decode and "
                     "evaluate imported from the recipe `qvl.recipes.answers`",
    },
    "head": {
        "summary": "a linear head classifies the last-token hidden state of a frozen Qwen-VL backbone.",
        "target_doc": 'the integer `"label"` (an index of the config\'s `labels`)',
        "hooks_doc": "register_tasks and build_dataset written here; build_collator, build_head, loss, "
                     "decode and evaluate imported from the recipe `qvl.recipes.labels`",
    },
}


def _template(name: str) -> string.Template:
    return string.Template(resources.files("qvl").joinpath("templates", name).read_text(encoding="utf-8"))


def plugin_files(name: str, kind: str = "sft") -> dict[str, str]:
    """Relative path -> text of every file of the ``qvl-NAME`` package; nothing is written.

    Separate from :func:`new_plugin` so the refusals are checked before any disk access.
    """
    if not _NAME.fullmatch(name):
        raise UserError(f"plugin name {name!r}: use letters, digits, '-' and '_' only (it is the task name)")
    if kind not in KINDS:
        raise UserError(f"plugin kind {kind!r}: expected one of {', '.join(KINDS)}")
    suffix = name.replace("-", "_").lower()
    package = f"qvl_{suffix}"
    values = {
        "name": name,
        "package": package,
        "package_suffix": suffix,
        "config_class": "".join(part.capitalize() for part in re.split(r"[-_]", name) if part) + "Config",
        **_DOCS[kind],
    }
    sources = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"src/{package}/__init__.py": "__init__.py.tmpl",
        f"src/{package}/plugin.py": f"{kind}_plugin.py.tmpl",
        f"src/{package}/data.py": f"{kind}_data.py.tmpl",
        f"tests/test_{suffix}.py": f"{kind}_test.py.tmpl",
    }
    return {path: _template(source).substitute(values) for path, source in sources.items()}


def new_plugin(name: str, directory: str | Path = ".", kind: str = "sft") -> Path:
    """Write ``DIRECTORY/qvl-NAME/`` and return its path.

    An existing non-empty folder is refused rather than merged into: overwriting a user's files
    would lose work, and a half-merged package would fail in confusing ways.
    """
    files = plugin_files(name, kind)
    target = Path(directory) / f"qvl-{name}"
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target}: already exists and is not empty; choose another --dir or name")
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
