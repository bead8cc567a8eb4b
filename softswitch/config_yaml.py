"""YAML to frozen msgspec Structs, keeping the line of every value (STYLE §4, SPEC DP-9).

PyYAML's composer gives a node tree in which every node knows where it starts. This module
turns that tree into plain Python values while recording ``path -> line``, then builds the
target Struct type field by field, so that *every* problem is reported, not only the first
one msgspec would stop at. Leaves (scalars, constrained numbers, literals) are validated by
``msgspec.convert`` itself, so msgspec's ``Meta`` constraints and messages are used as they
are; their ``$.a[1].b`` locations are joined to the field's path and mapped to the file line.

This module knows nothing about hotline's schema; `softswitch.config` does.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

import msgspec
import yaml

#: A location inside one file's document: mapping keys and sequence indexes.
KeyPath = tuple[str | int, ...]

_YAML_MERGE_TAG = "tag:yaml.org,2002:merge"
_YAML_STR_TAG = "tag:yaml.org,2002:str"
_MSGSPEC_LOCATION = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<at>[^`]*)`)?$", re.S)
_LOCATION_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


class ConfigIssue(msgspec.Struct, frozen=True):
    """One configuration problem: where it is and what is wrong.

    ``line`` is 1-based and ``None`` when the problem has no line (a missing file); ``path``
    is empty for problems of the file as a whole.
    """

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


def format_path(path: KeyPath) -> str:
    """Render a key path the way admins read it: ``queues[2].ring_timeout``."""
    out: list[str] = []
    for step in path:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif out:
            out.append(f".{step}")
        else:
            out.append(step)
    return "".join(out)


class YamlDocument:
    """One parsed YAML file: its plain value plus the line of every path in it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.value: Any = None
        #: path -> 1-based line; for a mapping entry the line of its key.
        self.lines: dict[KeyPath, int] = {}
        #: path -> source text of plain scalars that YAML resolved to a non-string
        #: (``010`` is octal 8 in YAML 1.1, ``+86`` an int): a string field gets the text back.
        self.raw: dict[KeyPath, str] = {}

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def issue(self, path: KeyPath, message: str) -> ConfigIssue:
        """An issue located at ``path`` in this document."""
        return ConfigIssue(self.file, self.line(path), format_path(path), message)


def parse_yaml(text: str, file: str, issues: list[ConfigIssue]) -> YamlDocument | None:
    """Parse one YAML document; on a syntax error append one issue and return None.

    Duplicate keys (which PyYAML would silently resolve to the last one), merge keys,
    non-scalar keys and recursive aliases are reported as issues too.
    """
    doc = YamlDocument(file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.context}: {exc.problem}"
        issues.append(ConfigIssue(file, mark.line + 1 if mark else None, "", problem))
        return None
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue(file, None, "", f"invalid YAML: {exc}"))
        return None
    if root is None:
        doc.value = None
        return doc
    before = len(issues)
    doc.value = _NodeConverter(doc, issues).convert(root, ())
    if len(issues) > before:
        return None
    return doc


class _NodeConverter:
    """Walks a composed node tree into plain values, recording lines and raw texts."""

    def __init__(self, doc: YamlDocument, issues: list[ConfigIssue]) -> None:
        self.doc = doc
        self.issues = issues
        self.constructor = yaml.SafeLoader("")
        self.active: set[int] = set()

    def convert(self, node: yaml.Node, path: KeyPath) -> Any:
        self.doc.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            try:
                value = self.constructor.construct_object(node, deep=True)
            except (ValueError, OverflowError, yaml.constructor.ConstructorError):
                # A plain scalar YAML resolves to a type it cannot build (`2026-02-30` as a
                # timestamp): keep the text; the field's own validation judges it.
                value = node.value
            if node.style is None and not isinstance(value, str) and value is not None:
                self.doc.raw[path] = node.value
            return value
        if id(node) in self.active:
            self.issues.append(self.doc.issue(path, "recursive alias"))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            self.issues.append(self.doc.issue(path, f"unsupported YAML node {node.tag}"))
            return None
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _YAML_MERGE_TAG:
                self.issues.append(
                    ConfigIssue(
                        self.doc.file,
                        key_line,
                        format_path(path),
                        "merge keys (<<) are not supported; write the keys out",
                    )
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.issues.append(
                    ConfigIssue(
                        self.doc.file,
                        key_line,
                        format_path(path),
                        "a mapping key must be a plain scalar",
                    )
                )
                continue
            key = str(key_node.value)
            child: KeyPath = (*path, key)
            if key in out:
                first = self.doc.lines.get(child)
                self.issues.append(
                    ConfigIssue(
                        self.doc.file,
                        key_line,
                        format_path(child),
                        f"duplicate key `{key}` (first at line {first})",
                    )
                )
                continue
            self.doc.lines[child] = key_line
            out[key] = self.convert(value_node, child)
        return out


# --------------------------------------------------------------------------- type analysis


def unwrap(tp: Any) -> tuple[Any, list[msgspec.Meta]]:
    """Strip ``Annotated``: the bare type and its msgspec ``Meta`` annotations."""
    metas: list[msgspec.Meta] = []
    while typing.get_origin(tp) is Annotated:
        args = typing.get_args(tp)
        metas.extend(a for a in args[1:] if isinstance(a, msgspec.Meta))
        tp = args[0]
    return tp, metas


def is_struct_type(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def union_args(tp: Any) -> tuple[Any, ...] | None:
    """The members of a ``X | Y`` / ``Optional[X]`` type, or None for other types."""
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def var_tuple_item(tp: Any) -> Any | None:
    """The item type of ``tuple[X, ...]`` or ``list[X]``, else None."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    if origin is list and len(args) == 1:
        return args[0]
    return None


def dict_args(tp: Any) -> tuple[Any, Any] | None:
    """The (key, value) types of ``dict[K, V]``, else None."""
    if typing.get_origin(tp) is dict:
        key, value = typing.get_args(tp)
        return key, value
    return None


def struct_tag(tp: Any) -> tuple[str, Any] | None:
    """(tag field, tag value) of a tagged Struct type (msgspec ``tag=``), else None."""
    config = getattr(tp, "__struct_config__", None)
    if config is None or config.tag is None:
        return None
    return config.tag_field, config.tag


def _literal_values(tp: Any) -> tuple[Any, ...]:
    bare, _ = unwrap(tp)
    if typing.get_origin(bare) is Literal:
        return typing.get_args(bare)
    members = union_args(bare)
    if members:
        return tuple(v for m in members for v in _literal_values(m))
    item = var_tuple_item(bare)
    if item is not None:
        return _literal_values(item)
    return ()


def _accepted_scalars(tp: Any) -> set[type]:
    """Python scalar types a leaf annotation accepts (str for a Literal of strings)."""
    bare, _ = unwrap(tp)
    members = union_args(bare)
    if members:
        return {t for m in members for t in _accepted_scalars(m)}
    if typing.get_origin(bare) is Literal:
        return {type(v) for v in typing.get_args(bare)}
    if bare in (str, int, float, bool, type(None)):
        return {float, int} if bare is float else {bare}
    return set()


def _kind(value: Any) -> str:
    """msgspec's name for the kind of a plain value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return {int: "int", float: "float", str: "str"}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- building

#: A per-type check, run on each successfully built struct: (value, path) -> None.
StructCheck = Callable[[Any, KeyPath], None]


class StructBuilder:
    """Builds a Struct type from one document's plain value, collecting every issue.

    ``checks`` maps a Struct type to a function run on each instance built (semantic checks
    that need only that instance, e.g. compiling a regex); their issues do not stop the
    building of enclosing values, whose checks run too. ``built_items`` keeps, for each
    sequence path, the items that were built successfully with their indexes, so that
    cross-reference checks can still run when a sibling item is broken; ``built_entries``
    does the same for mappings and ``built_structs`` lists every Struct built.

    Mappings (``dict[K, V]``) are walked key by key: the keys are path steps
    (``flows.main.nodes.menu``). A union whose members include Structs, mappings or
    sequences is dispatched on the kind of the value (object, array, scalar); several
    tagged Structs (msgspec ``tag_field``) are dispatched on the tag, and an unknown tag is
    reported with the allowed ones.
    """

    def __init__(
        self,
        doc: YamlDocument,
        issues: list[ConfigIssue],
        checks: dict[type, StructCheck] | None = None,
    ) -> None:
        self.doc = doc
        self.issues = issues
        self.checks = checks or {}
        self.built_items: dict[KeyPath, list[tuple[int, Any]]] = {}
        #: For each mapping path, the entries built successfully: (key, value).
        self.built_entries: dict[KeyPath, list[tuple[str, Any]]] = {}
        #: Every Struct built successfully, with its path, in the order they were built
        #: (inner values first), so that reference checks reach the good parts of a
        #: document whose other parts are broken.
        self.built_structs: list[tuple[KeyPath, Any]] = []

    def error(self, path: KeyPath, message: str) -> None:
        self.issues.append(self.doc.issue(path, message))

    def build(self, value: Any, tp: Any, path: KeyPath = ()) -> tuple[bool, Any]:
        """Validate ``value`` against ``tp``; return (ok, built value)."""
        bare, metas = unwrap(tp)
        members = union_args(bare)
        if members is not None:
            if value is None and type(None) in members:
                return True, None
            if any(_is_container(m) for m in members):
                return self._union(value, members, path)
            return self._leaf(value, tp, path)
        if is_struct_type(bare):
            return self._struct(value, bare, path)
        if dict_args(bare) is not None:
            return self._mapping(value, bare, path)
        item_type = var_tuple_item(bare)
        if item_type is not None and _is_container(item_type):
            return self._sequence(value, bare, item_type, metas, path)
        return self._leaf(value, tp, path)

    def _union(self, value: Any, members: tuple[Any, ...], path: KeyPath) -> tuple[bool, Any]:
        """A union with walked members: pick the member by the kind of ``value``."""
        others = [m for m in members if m is not type(None)]
        if len(others) == 1:
            return self.build(value, others[0], path)
        if isinstance(value, dict):
            structs = [m for m in others if is_struct_type(unwrap(m)[0])]
            if len(structs) == 1:
                return self.build(value, structs[0], path)
            if structs:
                return self._tagged(value, [unwrap(m)[0] for m in structs], path)
            mappings = [m for m in others if dict_args(unwrap(m)[0]) is not None]
            if mappings:
                return self.build(value, mappings[0], path)
        elif isinstance(value, list):
            sequences = [m for m in others if var_tuple_item(unwrap(m)[0]) is not None]
            if sequences:
                return self.build(value, sequences[0], path)
        else:
            leaves = [m for m in others if _type_kind(m) not in ("object", "array")]
            if leaves:
                leaf_type = leaves[0] if len(leaves) == 1 else Union[tuple(leaves)]  # noqa: UP007
                return self._leaf(value, leaf_type, path)
        kinds = " | ".join(dict.fromkeys(_type_kind(m) for m in members))
        self.error(path, f"Expected `{kinds}`, got `{_kind(value)}`")
        return False, None

    def _tagged(
        self, value: dict[str, Any], structs: list[type[msgspec.Struct]], path: KeyPath
    ) -> tuple[bool, Any]:
        """A mapping that is one of several tagged Structs: dispatch on the tag field."""
        by_tag: dict[Any, type[msgspec.Struct]] = {}
        field = "type"
        for tp in structs:
            tag = struct_tag(tp)
            if tag is not None:
                field = tag[0]
                by_tag[tag[1]] = tp
        allowed = ", ".join(str(t) for t in by_tag)
        if field not in value:
            self.error(path, f"Object missing required field `{field}` (one of: {allowed})")
            return False, None
        tag_value = value[field]
        chosen = by_tag.get(tag_value)
        if chosen is None:
            hint = difflib.get_close_matches(str(tag_value), [str(t) for t in by_tag], n=1)
            more = f"; did you mean `{hint[0]}`?" if hint else ""
            shown = json.dumps(tag_value) if not isinstance(tag_value, str) else tag_value
            self.error((*path, field), f"unknown {field} `{shown}`; allowed: {allowed}{more}")
            return False, None
        return self._struct(value, chosen, path)

    def _mapping(self, value: Any, tp: Any, path: KeyPath) -> tuple[bool, Any]:
        args = dict_args(tp)
        assert args is not None
        key_type, value_type = args
        if not isinstance(value, dict):
            self.error(path, f"Expected `object`, got `{_kind(value)}`")
            return False, None
        ok = True
        out: dict[Any, Any] = {}
        built: list[tuple[str, Any]] = []
        for key, item in value.items():
            child = (*path, key)
            try:
                built_key = msgspec.convert(key, key_type)
            except msgspec.ValidationError as exc:
                match = _MSGSPEC_LOCATION.match(str(exc))
                message = match.group("message") if match else str(exc)
                self.error(child, f"invalid key `{key}`: {message}")
                ok = False
                continue
            item_ok, obj = self.build(item, value_type, child)
            if item_ok:
                built.append((key, obj))
                out[built_key] = obj
            ok = ok and item_ok
        self.built_entries[path] = built
        if not ok:
            return False, None
        return True, out

    def _struct(self, value: Any, tp: type[msgspec.Struct], path: KeyPath) -> tuple[bool, Any]:
        if not isinstance(value, dict):
            self.error(path, f"Expected `object`, got `{_kind(value)}`")
            return False, None
        fields = {f.encode_name: f for f in msgspec.structs.fields(tp)}
        ok = True
        tag = struct_tag(tp)
        for key in value:
            if tag is not None and key == tag[0]:
                if value[key] != tag[1]:
                    ok = False
                    self.error((*path, key), f"Expected `{tag[1]}`, got `{value[key]}`")
                continue
            if key not in fields:
                ok = False
                hint = difflib.get_close_matches(key, list(fields), n=1)
                more = f"; did you mean `{hint[0]}`?" if hint else ""
                self.error((*path, key), f"unknown field `{key}`{more}")
        kwargs: dict[str, Any] = {}
        for name, field in fields.items():
            if name not in value:
                if field.required:
                    ok = False
                    self.error(path, f"Object missing required field `{name}`")
                continue
            field_ok, built = self.build(value[name], field.type, (*path, name))
            ok = ok and field_ok
            kwargs[field.name] = built
        if not ok:
            return False, None
        obj = tp(**kwargs)
        self.built_structs.append((path, obj))
        check = self.checks.get(tp)
        if check is not None:
            # A semantic problem is recorded but the value still counts as built, so the
            # checks of enclosing values and cross-references still run and report theirs.
            check(obj, path)
        return True, obj

    def _sequence(
        self, value: Any, tp: Any, item_type: Any, metas: list[msgspec.Meta], path: KeyPath
    ) -> tuple[bool, Any]:
        if not isinstance(value, list):
            self.error(path, f"Expected `array`, got `{_kind(value)}`")
            return False, None
        ok = self._check_length(value, metas, path)
        items: list[Any] = []
        built: list[tuple[int, Any]] = []
        for i, item in enumerate(value):
            item_ok, obj = self.build(item, item_type, (*path, i))
            if item_ok:
                built.append((i, obj))
            ok = ok and item_ok
            items.append(obj)
        self.built_items[path] = built
        if not ok:
            return False, None
        return True, list(items) if typing.get_origin(tp) is list else tuple(items)

    def _check_length(self, value: list[Any], metas: list[msgspec.Meta], path: KeyPath) -> bool:
        for meta in metas:
            if meta.min_length is not None and len(value) < meta.min_length:
                self.error(path, f"Expected `array` of length >= {meta.min_length}")
                return False
            if meta.max_length is not None and len(value) > meta.max_length:
                self.error(path, f"Expected `array` of length <= {meta.max_length}")
                return False
        return True

    def _leaf(self, value: Any, tp: Any, path: KeyPath) -> tuple[bool, Any]:
        value = self._restore_text(value, tp, path)
        try:
            return True, msgspec.convert(value, tp)
        except msgspec.ValidationError as exc:
            self._report(exc, value, tp, path)
            return False, None

    def _restore_text(self, value: Any, tp: Any, path: KeyPath) -> Any:
        """Give a string field the source text of a plain scalar YAML typed otherwise.

        An admin writes ``exact: 9000`` or ``prefix: 010``; YAML 1.1 makes the first an int
        and the second octal 8. Where the field wants a string, the text as written is meant.
        Applies inside lists of strings too.
        """
        if isinstance(value, list):
            bare, _ = unwrap(tp)
            members = union_args(bare) or (bare,)
            for member in members:
                item = var_tuple_item(unwrap(member)[0])
                if item is not None:
                    return [self._restore_text(v, item, (*path, i)) for i, v in enumerate(value)]
            return value
        raw = self.doc.raw.get(path)
        if raw is None or isinstance(value, str):
            return value
        accepted = _accepted_scalars(tp)
        if str in accepted and type(value) not in accepted:
            return raw
        return value

    def _report(self, exc: msgspec.ValidationError, value: Any, tp: Any, path: KeyPath) -> None:
        match = _MSGSPEC_LOCATION.match(str(exc))
        message = match.group("message") if match else str(exc)
        at = match.group("at") if match else None
        sub: list[str | int] = []
        if at:
            for key, index in _LOCATION_STEP.findall(at):
                sub.append(int(index) if index else key)
        full = (*path, *sub)
        offending = value
        for step in sub:
            try:
                offending = offending[step]
            except (KeyError, IndexError, TypeError):
                offending = None
                break
        if message.startswith("Invalid enum value"):
            allowed = ", ".join(repr(v) for v in _literal_values(tp))
            if allowed:
                message = f"{message}; allowed: {allowed}"
        elif "got" not in message and not isinstance(offending, dict | list):
            shown = self.doc.raw.get(full)
            message = f"{message}, got {shown if shown is not None else json.dumps(offending)}"
        self.error(full, message)


def _is_container(tp: Any) -> bool:
    """True if ``tp`` must be walked: a Struct, a mapping, a union with such a member, or a
    sequence of those."""
    bare, _ = unwrap(tp)
    members = union_args(bare)
    if members is not None:
        return any(_is_container(m) for m in members)
    if is_struct_type(bare) or dict_args(bare) is not None:
        return True
    item = var_tuple_item(bare)
    return item is not None and _is_container(item)


def _type_kind(tp: Any) -> str:
    """The msgspec kind name a type expects (``object``, ``array``, ``str``…)."""
    bare, _ = unwrap(tp)
    if is_struct_type(bare) or dict_args(bare) is not None:
        return "object"
    if var_tuple_item(bare) is not None:
        return "array"
    if typing.get_origin(bare) is Literal:
        return " | ".join(sorted({_kind(v) for v in typing.get_args(bare)}))
    return {str: "str", int: "int", float: "float", bool: "bool", type(None): "null"}.get(
        bare, getattr(bare, "__name__", str(bare))
    )


# --------------------------------------------------------------------------- reference docs


def describe_type(tp: Any) -> str:
    """A short human description of a field type with its constraints, for the admin docs."""
    bare, metas = unwrap(tp)
    members = union_args(bare)
    if members is not None:
        tagged = [(m, tag) for m in members if (tag := struct_tag(m)) is not None]
        if len(members) > 2 and len(tagged) == len(members):
            choices = ", ".join(f"`{tag[1]}` ({m.__name__})" for m, tag in tagged)
            return f"mapping chosen by `{tagged[0][1][0]}`: {choices}"
        parts = [describe_type(m) for m in members if m is not type(None)]
        text = " or ".join(parts)
        if type(None) in members:
            text += " or null"
        return _with_constraints(text, metas)
    if is_struct_type(bare):
        text = f"mapping ({bare.__name__})"
    elif dict_args(bare) is not None:
        key, value = dict_args(bare) or (str, str)
        text = f"mapping of {describe_type(key)} to {describe_type(value)}"
    elif typing.get_origin(bare) is Literal:
        text = "one of " + ", ".join(f"`{v}`" for v in typing.get_args(bare))
    elif var_tuple_item(bare) is not None:
        item = describe_type(var_tuple_item(bare))
        text = f"list of ({item})" if " or " in item else f"list of {item}"
    else:
        text = {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
            bare, getattr(bare, "__name__", str(bare))
        )
    return _with_constraints(text, metas)


def _with_constraints(text: str, metas: list[msgspec.Meta]) -> str:
    bounds = []
    for meta in metas:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr) is not None:
                bounds.append(f"{sign} {getattr(meta, attr)}")
        if meta.min_length is not None:
            bounds.append(f"length >= {meta.min_length}")
        if meta.max_length is not None:
            bounds.append(f"length <= {meta.max_length}")
        if meta.pattern is not None:
            bounds.append(f"matching `{meta.pattern}`")
    return f"{text}, {', '.join(bounds)}" if bounds else text


def field_description(tp: Any) -> str:
    """The ``Meta(description=...)`` of a field annotation, or an empty string."""
    _, metas = unwrap(tp)
    return " ".join(m.description for m in metas if m.description)


def describe_default(field: msgspec.structs.FieldInfo) -> str:
    """The default of a field as YAML flow text, ``required`` if it has none."""
    if field.required:
        return "required"
    default = field.default_factory() if field.default is msgspec.NODEFAULT else field.default
    if isinstance(default, msgspec.Struct):
        # A section defaulting to its own defaults is described by its own table.
        changed = {
            f.encode_name: msgspec.to_builtins(getattr(default, f.name))
            for f in msgspec.structs.fields(default)
            if f.required or getattr(default, f.name) != f.default
        }
        if not changed:
            return f"see {type(default).__name__}"
        return f"`{json.dumps(changed, ensure_ascii=False)}`"
    return f"`{json.dumps(msgspec.to_builtins(default), ensure_ascii=False)}`"


def _struct_table(tp: type[msgspec.Struct]) -> list[str]:
    doc = (tp.__doc__ or "").strip().split("\n\n")[0]
    intro = " ".join(line.strip() for line in doc.splitlines())
    tag = struct_tag(tp)
    if tag is not None:
        intro = f"`{tag[0]}: {tag[1]}`. {intro}".rstrip()
    lines = [f"#### {tp.__name__}", ""]
    if intro:
        lines.extend((intro, ""))
    lines.extend(("| key | type | default | meaning |", "| --- | --- | --- | --- |"))
    for field in msgspec.structs.fields(tp):
        text = field_description(field.type).replace("|", "\\|")
        kind = describe_type(field.type).replace("|", "\\|")
        lines.append(f"| `{field.encode_name}` | {kind} | {describe_default(field)} | {text} |")
    lines.append("")
    return lines


def _nested_structs(tp: Any, seen: list[type]) -> None:
    bare, _ = unwrap(tp)
    members = union_args(bare)
    if members is not None:
        for member in members:
            _nested_structs(member, seen)
        return
    item = var_tuple_item(bare)
    if item is not None:
        _nested_structs(item, seen)
        return
    mapping = dict_args(bare)
    if mapping is not None:
        _nested_structs(mapping[0], seen)
        _nested_structs(mapping[1], seen)
        return
    if is_struct_type(bare) and bare not in seen:
        seen.append(bare)
        for field in msgspec.structs.fields(bare):
            _nested_structs(field.type, seen)


def render_reference(preamble: str, files: list[tuple[str, str, type[msgspec.Struct]]]) -> str:
    """Markdown reference: ``preamble``, then per (title, intro, file type) one table per
    Struct reachable from the file type, in order of first appearance."""
    lines = [preamble]
    for title, intro, file_type in files:
        lines.extend((f"## {title}", "", intro, ""))
        structs: list[type] = []
        _nested_structs(file_type, structs)
        for tp in structs:
            lines.extend(_struct_table(tp))
    return "\n".join(lines).rstrip() + "\n"
