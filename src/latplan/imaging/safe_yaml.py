"""YAML for case folders: UTF-8 only, no duplicate keys, bounded size and alias expansion.

Why: PyYAML's ``safe_load`` lets a later duplicate key silently win (a duplicated label value
turned a lesion into the gallbladder), decodes with the locale, and accepts alias bombs
("billion laughs": nine levels of nine aliases expand to 10⁹ nodes and hang whatever walks the
result). Each of these is refused here with a named error naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from latplan.errors import CaseFolderError
from latplan.imaging.errors import DuplicateYamlKeyError, YamlEncodingError, YamlLimitError

__all__ = ["MAX_YAML_ALIASES", "MAX_YAML_BYTES", "MAX_YAML_NODES", "load_yaml_file", "load_yaml_text"]

#: a case.yaml / labels.yaml is a few kB; TotalSegmentator's 117-class table is ≈ 4 kB
MAX_YAML_BYTES = 1_000_000
#: alias uses allowed in one file (anchors are legitimate, bombs use thousands)
MAX_YAML_ALIASES = 100
#: nodes after expanding every alias (a case.yaml has < 1000)
MAX_YAML_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts aliases and refuses duplicate mapping keys."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self.alias_count = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_YAML_ALIASES:
                raise YamlLimitError(
                    f"{self.source} uses more than {MAX_YAML_ALIASES} YAML aliases (*name); a case file needs few or "
                    "none. Write the values out (this also refuses alias bombs such as 'billion laughs')."
                )
        return super().compose_node(parent, index)  # type: ignore[no-any-return]

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                hash(key)
            except TypeError:
                continue  # reported by PyYAML itself below
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateYamlKeyError(
                    f"{self.source}: key {key!r} appears twice (lines {seen[key]} and {line}); YAML would keep only the "
                    "last one silently. Remove or renumber one of them."
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_nodes(root: Node) -> int:
    """Node count with every alias expanded (memoised over the shared node graph)."""
    memo: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in memo:
            continue
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            memo[id(node)] = 1 + sum(memo.get(id(c), 1) for c in children)
            continue
        stack.append((node, True))
        for c in children:
            if id(c) not in memo:
                stack.append((c, False))
    return memo.get(id(root), 1)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse YAML ``text`` (``source`` names it in messages) with the limits above."""
    loader = _Loader(text, source)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        n = _expanded_nodes(root)
        if n > MAX_YAML_NODES:
            raise YamlLimitError(
                f"{source} expands to {n} YAML nodes through aliases (limit {MAX_YAML_NODES}); this is an alias bomb "
                "or a generated file. Write the values out without aliases."
            )
        return loader.construct_document(root)
    except RecursionError:
        raise YamlLimitError(f"{source} nests too deeply or refers to itself through an alias; flatten it.") from None
    except yaml.YAMLError as exc:
        raise CaseFolderError(f"{source} is not valid YAML: {exc}".replace("\n", " ")) from None
    finally:
        loader.dispose()


def load_yaml_file(path: Path) -> Any:
    """Read a YAML file: size limit, strict UTF-8 (a BOM is accepted), then :func:`load_yaml_text`."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise YamlLimitError(
                f"{path} is {size} bytes; a case YAML file is limited to {MAX_YAML_BYTES} bytes. Is this the right file?"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise CaseFolderError(f"cannot read {path}: {exc.strerror or exc}. Check the path and its permissions.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlEncodingError(
            f"{path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}). Save it as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)."
        ) from None
    return load_yaml_text(text, str(path))
