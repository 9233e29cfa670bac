"""Paths: plain dotted paths are direct look-ups, everything else is JMESPath, and both agree."""

import jmespath
import pytest

from exporter.paths import PathError, compile_path, field_keys

DOC = {"metadata": {"name": "pod-a", "labels": {"app.kubernetes.io/name": "chat"}}, "items": [{"v": 1}, {"v": 2}], "n": None}


@pytest.mark.parametrize(
    "path", ["metadata.name", "metadata", 'metadata.labels."app.kubernetes.io/name"', "missing.deeper", "n.x", "items[1].v", "items[*].v", "length(items)"]
)
def test_a_compiled_path_agrees_with_jmespath(path):
    assert compile_path(path)(DOC) == jmespath.search(path, DOC)


def test_at_sign_and_empty_paths_return_the_node_itself():
    assert compile_path("@")(DOC) is DOC
    assert compile_path("")(5) == 5


def test_a_plain_path_over_a_non_object_yields_none():
    assert compile_path("a.b")({"a": [1, 2]}) is None
    assert compile_path("a")("text") is None


def test_an_invalid_expression_raises_a_path_error_naming_it():
    with pytest.raises(PathError, match=r"items\[\?"):
        compile_path("items[?")


@pytest.mark.parametrize(
    "expression, keys",
    [("@", ()), ("", ()), ("a", ("a",)), ("a.b_c", ("a", "b_c")), ('"x-y".z', ("x-y", "z")), ("a[0]", None), ("length(a)", None)],
)
def test_field_keys_names_the_keys_of_a_plain_chain_and_nothing_for_jmespath(expression, keys):
    assert field_keys(expression) == keys
