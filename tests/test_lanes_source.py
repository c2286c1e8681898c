"""The per-d lanes kernels of ``_statespace_lanes`` are the template's (``_lanes_source``)."""

from __future__ import annotations

import ast
import inspect

import pytest

from deltaflow.kernels import _lanes_source, _statespace_lanes


def _functions(text: str) -> dict[str, str]:
    tree = ast.parse(text)
    return {n.name: ast.dump(n) for n in tree.body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("d", _lanes_source.DIMS)
def test_module_kernels_are_the_template(d):
    """Every generated kernel in the module has the template's syntax tree, d by d: a change
    made to one copy by hand (and not to the template) fails here."""
    mine = _functions(inspect.getsource(_statespace_lanes))
    want = _functions(
        "\n\n".join(
            k(d)
            for k in (
                _lanes_source.forward,
                _lanes_source.backward,
                _lanes_source.innovations,
                _lanes_source.store,
            )
        )
    )
    assert set(want) == {f"_forward{d}", f"_backward{d}", f"_innovations{d}", f"_store{d}"}
    for name, tree in want.items():
        assert mine.get(name) == tree, f"{name} differs from _lanes_source's template"


def test_generated_part_is_marked_and_complete():
    """The module holds the generated kernels between the markers, and nothing else there."""
    text = inspect.getsource(_statespace_lanes)
    assert text.count(_lanes_source.BEGIN) == 1 and text.count(_lanes_source.END) == 1
    inside = text.split(_lanes_source.BEGIN, 1)[1].split(_lanes_source.END, 1)[0]
    assert _functions(inside) == _functions(_lanes_source.source())


def test_template_other_d_parses():
    """The template writes valid kernels for another d too (d = 5: 10 couplings of F)."""
    src = "\n\n".join(
        k(5) for k in (_lanes_source.forward, _lanes_source.backward, _lanes_source.innovations)
    )
    names = _functions(src)
    assert set(names) == {"_forward5", "_backward5", "_innovations5"}
    assert "f34 * m4" in src and "g44 * d4" in src
