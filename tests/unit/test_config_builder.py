"""StructBuilder on its own: mappings, unions dispatched by kind, tagged unions."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from softswitch.config_yaml import ConfigIssue, StructBuilder, describe_type, parse_yaml


class Cat(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="cat", tag_field="kind"):
    lives: Annotated[int, Meta(ge=1, le=9)] = 9


class Dog(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="dog", tag_field="kind"):
    name: str


class Fish(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="fish", tag_field="kind"):
    pass


class Leash(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    length: float


class Home(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pets: dict[Annotated[str, Meta(pattern="^[a-z]+$")], Cat | Dog | Fish] = {}
    leash: str | tuple[str | Leash, ...] | None = None
    labels: dict[str, str] = {}


def build(text: str) -> tuple[Any, list[str], StructBuilder]:
    issues: list[ConfigIssue] = []
    doc = parse_yaml(text, "home.yaml", issues)
    assert doc is not None
    builder = StructBuilder(doc, issues)
    ok, value = builder.build(doc.value, Home)
    return (value if ok else None), [str(i) for i in issues], builder


def test_tagged_union_values_of_a_mapping_are_built_by_their_tag() -> None:
    home, errors, builder = build(
        "pets:\n  tom: {kind: cat, lives: 3}\n  rex: {kind: dog, name: Rex}\n  nemo: {kind: fish}\n"
    )
    assert errors == []
    assert home.pets == {"tom": Cat(lives=3), "rex": Dog(name="Rex"), "nemo": Fish()}
    assert [key for key, _ in builder.built_entries[("pets",)]] == ["tom", "rex", "nemo"]
    assert [path for path, _ in builder.built_structs] == [
        ("pets", "tom"),
        ("pets", "rex"),
        ("pets", "nemo"),
        (),
    ]


def test_errors_in_mapping_values_name_the_key_and_its_line() -> None:
    _, errors, builder = build(
        "pets:\n"
        "  tom: {kind: cat, lives: 10}\n"
        "  rex: {kind: dgo}\n"
        "  Bad: {kind: fish}\n"
        "  nemo: {lives: 1}\n"
        "  ok: {kind: dog, name: Ok}\n"
    )
    assert errors == [
        "home.yaml:2: pets.tom.lives: Expected `int` <= 9, got 10",
        "home.yaml:3: pets.rex.kind: unknown kind `dgo`; allowed: cat, dog, fish; did you mean "
        "`dog`?",
        "home.yaml:4: pets.Bad: invalid key `Bad`: Expected `str` matching regex '^[a-z]+$'",
        "home.yaml:5: pets.nemo: Object missing required field `kind` (one of: cat, dog, fish)",
    ]
    assert builder.built_entries[("pets",)] == [("ok", Dog(name="Ok"))]  # the good sibling


def test_union_member_is_chosen_by_the_kind_of_the_value() -> None:
    home, errors, _ = build("leash: [short, {length: 2}]\nlabels: {a: 1}\n")
    assert errors == []
    assert home.leash == ("short", Leash(length=2.0))
    assert home.labels == {"a": "1"}  # the text as written
    home, errors, _ = build("leash: long\n")
    assert home.leash == "long"
    _, errors, _ = build("leash: {length: 1}\n")
    assert errors == ["home.yaml:1: leash: Expected `str | array | null`, got `object`"]
    _, errors, _ = build("leash: [{length: x}, {colour: red}]\n")
    assert errors == [
        "home.yaml:1: leash[0].length: Expected `float`, got `str`",
        "home.yaml:1: leash[1].colour: unknown field `colour`",
        "home.yaml:1: leash[1]: Object missing required field `length`",
    ]


def test_a_tagged_struct_used_directly_checks_its_tag() -> None:
    issues: list[ConfigIssue] = []
    doc = parse_yaml("kind: dog\nname: x\n", "pet.yaml", issues)
    assert doc is not None
    ok, _ = StructBuilder(doc, issues).build(doc.value, Cat)
    assert not ok
    assert [str(i) for i in issues][0] == "pet.yaml:1: kind: Expected `cat`, got `dog`"


def test_reference_descriptions_of_mappings_and_tagged_unions() -> None:
    assert describe_type(dict[str, int]) == "mapping of string to integer"
    assert describe_type(Cat | Dog | Fish) == (
        "mapping chosen by `kind`: `cat` (Cat), `dog` (Dog), `fish` (Fish)"
    )
    assert describe_type(tuple[str | Leash, ...]) == "list of (string or mapping (Leash))"
