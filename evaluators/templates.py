"""Prompt templates: Jinja as lm-evaluation-harness renders it, or Python format strings.

lm-eval 0.4.13 (``lm_eval/utils.py``) renders with one ``jinja2.Environment(loader=
BaseLoader, undefined=StrictUndefined, keep_trailing_newline=True)`` and a
``regex_replace`` filter (``re.sub``); restated here so a template renders to the same text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal

from evaluators.errors import MissingDependencyError, TaskSpecError
from merge3.registry import did_you_mean

__all__ = ["PromptFormat", "looks_like_jinja", "render_jinja", "render_prompt"]

PromptFormat = Literal["auto", "python", "jinja"]

# "{{ expression }}" or "{% statement %}": Jinja. A Python format string writes literal
# braces as "{{"/"}}" too, so "auto" reads a template as Jinja only when a "{{ ... }}"
# holds a name or expression, or a "{%" / "{#" tag appears.
_JINJA = re.compile(r"\{\{\s*[^{}\s][^{}]*\}\}|\{%|\{#")


def looks_like_jinja(template: str) -> bool:
    """Whether ``template`` holds Jinja syntax (``{{ name }}``, ``{% ... %}``, ``{# #}``)."""
    return bool(_JINJA.search(template))


def _regex_replace(text: str, pattern: str, repl: str, count: int = 0) -> str:
    return re.sub(pattern, repl, text, count=count)


@lru_cache(maxsize=1)
def _environment():
    try:
        from jinja2 import BaseLoader, Environment, StrictUndefined
    except ImportError as err:  # torch depends on jinja2: only a broken install lacks it
        raise MissingDependencyError(
            "Jinja prompt templates need jinja2, which is not installed.",
            fix="pip install jinja2 (it comes with torch).",
        ) from err
    env = Environment(loader=BaseLoader, undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_replace"] = _regex_replace
    return env


@lru_cache(maxsize=256)
def _compiled(template: str):
    return _environment().from_string(template)


def render_jinja(template: str, row: Mapping[str, Any], *, task: str, item_id: str,
                 field: str) -> str:
    """Render a Jinja template over a dataset row; errors name the task, item and field."""
    from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError

    try:
        return _compiled(template).render(**row)
    except TemplateSyntaxError as err:
        raise TaskSpecError(
            f"Task {task!r}: {field} is not a valid Jinja template ({err.message}, line "
            f"{err.lineno}): {template!r}.",
            fix="check the {{ }} and {% %} pairs (lm-eval task templates are Jinja).",
        ) from None
    except UndefinedError as err:
        missing = re.search(r"'([^']+)' is undefined", str(err))
        name = missing.group(1) if missing else str(err)
        raise TaskSpecError(
            f"Task {task!r}: {field} uses {name!r}, which is not a column of item "
            f"{item_id!r}.{did_you_mean(name, list(row))}",
            fix=f"use one of the columns {sorted(row)}.",
        ) from None
    except (TemplateError, TypeError, ValueError, IndexError, KeyError) as err:
        raise TaskSpecError(
            f"Task {task!r}: {field} fails to render on item {item_id!r}: {err}.",
            fix="check the template against the dataset's columns.",
        ) from None


def render_prompt(template: str, row: Mapping[str, Any], prompt_format: PromptFormat, *,
                  task: str, item_id: str) -> str:
    """A merge3 ``prompt``: Jinja when asked (or, with ``auto``, when it holds Jinja
    syntax), else a Python format template over the row's columns."""
    jinja = prompt_format == "jinja" or (prompt_format == "auto" and looks_like_jinja(template))
    if jinja:
        return render_jinja(template, row, task=task, item_id=item_id, field="prompt")
    try:
        return template.format_map(row)
    except KeyError as err:
        raise TaskSpecError(
            f"Task {task!r}: prompt field {{{err.args[0]}}} is not a column of item "
            f"{item_id!r}.{did_you_mean(str(err.args[0]), list(row))}",
            fix=f"use one of the columns {sorted(row)} (write {{{{ and }}}} for literal braces "
            "and set prompt_format: python).",
        ) from None
    except (IndexError, ValueError) as err:
        raise TaskSpecError(f"Task {task!r}: bad prompt template: {err}.") from None
