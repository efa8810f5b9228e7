"""Rule-set files on disk: read them into the pure domain's :class:`RuleSet` and catalog.

The domain parses bytes; this module is the thin file-system edge, shared by the service (which
loads its catalog once, when the app is created) and the ``incentives rules`` command.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from services.eligibility.domain import (
    RuleCatalog,
    RuleSet,
    RuleSetError,
    build_catalog,
    parse_rule_set,
)

#: The rule sets shipped with the service (one TOML file per version).
SHIPPED_RULES_DIR = Path(__file__).parent / "rulesets"
#: The file extension of a rule-set file.
RULE_FILE_SUFFIX = ".toml"


def rule_files(path: Path) -> list[Path]:
    """``path`` itself for a file, or the ``*.toml`` files of a directory in name order.

    Raises:
        RuleSetError: the path does not exist, or a directory holds no rule-set file.
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == RULE_FILE_SUFFIX and p.is_file())
        if not files:
            raise RuleSetError(str(path), [f"no *{RULE_FILE_SUFFIX} rule-set file in the folder"])
        return files
    if not path.exists():
        raise RuleSetError(str(path), ["no such file or folder"])
    return [path]


def read_rule_set(path: Path) -> RuleSet:
    """Read, validate and compile one rule-set file; its hash is that of the bytes read.

    Raises:
        RuleSetError: the file cannot be read or is invalid.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuleSetError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from exc
    return parse_rule_set(data, source=path.name)


def read_rule_sets(paths: Iterable[Path]) -> list[RuleSet]:
    """Every rule set of ``paths`` (files or folders), collecting all files' problems.

    Raises:
        RuleSetError: one or more files are invalid; ``problems`` are prefixed by file name.
    """
    rule_sets: list[RuleSet] = []
    problems: list[str] = []
    for path in paths:
        try:
            files = rule_files(path)
        except RuleSetError as exc:
            problems.extend(f"{exc.source}: {problem}" for problem in exc.problems)
            continue
        for file in files:
            try:
                rule_sets.append(read_rule_set(file))
            except RuleSetError as exc:
                problems.extend(f"{exc.source}: {problem}" for problem in exc.problems)
    if problems:
        raise RuleSetError(", ".join(str(p) for p in paths), problems)
    return rule_sets


def load_catalog(path: Path = SHIPPED_RULES_DIR) -> RuleCatalog:
    """The catalog of every rule set under ``path`` (a folder or one file).

    Raises:
        RuleSetError: an invalid file, or versions/effective dates that collide.
    """
    return build_catalog(read_rule_sets([path]), source=str(path))
