"""Eligibility rules: versioned rule sets of CEL expressions, and their evaluation.

Pure: no I/O here. A rule set is parsed from the *bytes* of its file (the caller reads them), so
its content hash is the SHA-256 of exactly those bytes, and a decision can name the file that
made it. Everything expensive (TOML parsing, validation, CEL compilation) happens once, in
:func:`parse_rule_set`; :meth:`RuleSet.evaluate` only runs the compiled programs.

Rule-set file (TOML)
--------------------
::

    [rule_set]
    id = "gaip-eligibility"            # identifier, shared by every version of the rules
    version = "2026.1"                 # unique per id
    effective_from = 2026-01-01        # applies to applications submitted on/after this UTC date
    title = "..."                      # optional
    description = "..."                # optional

    [parameters]                       # optional constants, bound to `params` in expressions
    minimum_investment_eur = 1_000_000

    [money]                            # optional; fixed exchange rates of this version
    base_currency = "EUR"
    rates = { USD = "0.92" }           # base units per unit, as decimal strings (never floats)

    [[rules]]                          # evaluated in file order
    id = "minimum_investment"          # unique within the rule set
    description = "..."                # optional: what the rule checks
    requires = ["proposal.investment_commitment"]   # optional: content fields the rule needs
    expression = "proposal.investment_commitment.eur >= params.minimum_investment_eur"
    explanation = "..."                # required: why the rule failed, for the firm
    pass_explanation = "..."           # optional: shown when it passes
    missing_explanation = "..."        # optional: shown when it needs information
    failure = "ineligible"             # or "needs_information": what a `false` result means

CEL bindings
------------
Each expression sees the five sections of the application content as variables, ``firm``,
``incentives``, ``proposal``, ``commitments`` and ``documents``, plus ``params`` (when every
expression names parameters as ``params.<name>``, they are compiled into the programs as
literals instead of being bound for each application) and ``submitted_at``, the time of the
submission the rule set was chosen for (a CEL timestamp), and one function,
``months_before(timestamp, int)``: the same instant that many calendar months earlier (the day
clamped to the month's end, so 12 months before 2028-02-29 is 2027-02-28). Values are the
contract's, with these conversions:

- every field of the contract that an expression names is present; an optional field not
  given is ``null`` (test with ``!= null``: ``has()`` is always true), an empty list is ``[]``.
  Fields no expression of the rule set names are left out of the bindings (converting them
  would cost time and change nothing); a section an expression reads other than by its field
  names (``size(firm)``, ``firm.exists(k, …)``) is bound whole;
- enums are their string values (``proposal.sector == "health"``), timestamps are CEL
  timestamps;
- percentages are doubles (``firm.foreign_ownership_pct >= 25``);
- money is a map ``{"amount": double, "currency": "USD", "eur": double | null}``: ``amount`` in
  its own currency, and the amount in the rule set's base currency under the lower-case base
  code (``eur`` for EUR), converted with the rule set's fixed rates in exact decimal arithmetic
  and rounded to cents (half-even); ``null`` when the rule set has no rate for the currency.
  Doubles compare exactly with whole-number thresholds: an amount with at most four decimals
  below 10^11 never rounds across one.

Outcome and errors
------------------
A rule is checked in this order:

1. if a field it ``requires`` is missing (absent, ``null``, an empty string or an empty list),
   it is not evaluated: it *needs information* naming those fields;
2. otherwise its expression runs. ``true`` passes. ``false`` fails, or needs information on its
   ``requires`` fields when the rule says ``failure = "needs_information"``;
3. an evaluation error (a missing key, a type mismatch, a non-boolean result) is never a pass.
   A rule that names ``requires`` then needs information on those fields (the data it depends
   on is there but unusable, e.g. a currency the rule set cannot convert); a rule without
   ``requires`` fails with its explanation. The error text is kept on the outcome for auditors
   and operators, never sent to the firm.

The decision is *ineligible* if any rule failed, else *needs information* if any rule needs it
(naming every missing field), else *eligible*.
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import Enum, StrEnum
from typing import Any, Final

import cel
from pydantic import BaseModel

from contracts.iso import currency_problem
from contracts.money import Money
from contracts.v1.applications import CONTENT_EXAMPLE, ApplicationContent
from contracts.v1.common import EligibilityOutcome
from contracts.v1.eligibility import EligibilityAssessed, RuleResult

__all__ = [
    "CONTENT_VARIABLES",
    "PARAMS_VARIABLE",
    "SUBMITTED_AT_VARIABLE",
    "Decision",
    "MoneyTable",
    "NoRuleSetInForce",
    "Rule",
    "RuleCatalog",
    "RuleFailure",
    "RuleOutcome",
    "RuleSet",
    "RuleSetError",
    "RuleStatus",
    "build_catalog",
    "content_sha256",
    "months_before",
    "parse_rule_set",
]

#: The application content's sections, each bound to a CEL variable of the same name.
CONTENT_VARIABLES: Final = ("firm", "incentives", "proposal", "commitments", "documents")
#: The variable holding the rule set's ``[parameters]``.
PARAMS_VARIABLE: Final = "params"
#: The variable holding the submission time the rule set judges (a CEL timestamp).
SUBMITTED_AT_VARIABLE: Final = "submitted_at"
_KNOWN_VARIABLES: Final = frozenset({*CONTENT_VARIABLES, PARAMS_VARIABLE, SUBMITTED_AT_VARIABLE})

#: Contract limits a decision must fit (``EligibilityAssessed``, ``RuleResult``).
MAX_RULES: Final = 500
MAX_EXPLANATION: Final = 4000
#: Error details kept per rule outcome; CEL messages can be long and are for operators only.
MAX_ERROR_DETAIL: Final = 500

_RULE_ID = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_RULE_SET_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,49}$")
_FIELD_PATH = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*|\[[0-9]+\])*$")
_PATH_TOKEN = re.compile(r"([a-z][a-z0-9_]*)|\[([0-9]+)\]")
# Variables bound by CEL comprehension macros (`list.exists(d, ...)`): not free variables.
_MACRO_BINDER = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_CENT: Final = Decimal("0.01")

_TOP_LEVEL_KEYS: Final = frozenset({"rule_set", "parameters", "money", "rules"})
_RULE_SET_KEYS: Final = frozenset({"id", "version", "effective_from", "title", "description"})
_MONEY_KEYS: Final = frozenset({"base_currency", "rates"})
_RULE_KEYS: Final = frozenset(
    {
        "id",
        "description",
        "requires",
        "expression",
        "explanation",
        "pass_explanation",
        "missing_explanation",
        "failure",
    }
)


# --- errors ---------------------------------------------------------------------------------


class RuleSetError(ValueError):
    """A rule-set file (or a set of them) is invalid; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems: tuple[str, ...] = tuple(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{source}: invalid rule set\n{listed}")


class NoRuleSetInForce(LookupError):
    """No rule set applies at the requested date (it predates every ``effective_from``)."""

    def __init__(self, on: date, earliest: date | None) -> None:
        self.on = on
        self.earliest = earliest
        since = f"; the earliest takes effect on {earliest}" if earliest else ""
        super().__init__(f"no eligibility rule set is in force on {on}{since}")


# --- rule sets ------------------------------------------------------------------------------


class RuleFailure(StrEnum):
    """What a rule's ``false`` result means."""

    INELIGIBLE = "ineligible"
    NEEDS_INFORMATION = "needs_information"


@dataclass(frozen=True, slots=True)
class MoneyTable:
    """Fixed exchange rates of one rule-set version: base-currency units per currency unit."""

    base_currency: str
    rates: Mapping[str, Decimal]

    @property
    def base_key(self) -> str:
        """The key of the converted amount in a CEL money map (``eur`` for EUR)."""
        return self.base_currency.lower()

    def to_base(self, money: Money) -> Decimal | None:
        """``money`` in the base currency, rounded to cents; ``None`` without a rate."""
        rate = self.rates.get(money.currency)
        if rate is None:
            return None
        return (money.amount * rate).quantize(_CENT, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: a compiled CEL expression and what to tell the firm about it."""

    id: str
    expression: str
    explanation: str
    description: str | None = None
    pass_explanation: str | None = None
    missing_explanation: str | None = None
    requires: tuple[str, ...] = ()
    failure: RuleFailure = RuleFailure.INELIGIBLE
    #: The compiled program, built once when the rule set is parsed.
    program: cel.Program | None = field(default=None, compare=False, repr=False)
    #: The text ``program`` was compiled from when it is not ``expression`` (parameters
    #: inlined, patterns precompiled: see :func:`_cheaper`).
    compiled_from: str = field(default="", compare=False, repr=False)
    #: ``requires`` split into (field name, list index) steps once, for the per-message check.
    steps: tuple[tuple[tuple[str, int | None], ...], ...] = field(
        default=(), compare=False, repr=False
    )
    #: The outcomes of a ``true`` and of a ``false`` result, built once: they depend on the
    #: rule alone, and outcomes are immutable, so every evaluation shares them.
    on_true: RuleOutcome = field(init=False, compare=False, repr=False)
    on_false: RuleOutcome = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.steps and self.requires:
            object.__setattr__(self, "steps", tuple(_path_steps(p) for p in self.requires))
        object.__setattr__(
            self, "on_true", RuleOutcome(self.id, RuleStatus.PASSED, self.passed_text())
        )
        if self.failure is RuleFailure.NEEDS_INFORMATION:
            on_false = RuleOutcome(
                self.id,
                RuleStatus.NEEDS_INFORMATION,
                self.missing_text(self.requires),
                self.requires,
            )
        else:
            on_false = RuleOutcome(self.id, RuleStatus.FAILED, self.explanation)
        object.__setattr__(self, "on_false", on_false)

    def passed_text(self) -> str:
        """The explanation of a pass."""
        if self.pass_explanation:
            return self.pass_explanation
        if self.description:
            return f"Met: {self.description}"
        return "The application meets this rule."

    def missing_text(self, fields: Sequence[str]) -> str:
        """The explanation of a needs-information outcome naming ``fields``."""
        if self.missing_explanation:
            return self.missing_explanation
        return (
            "More information is needed to assess this rule; please complete: "
            + ", ".join(fields)
            + "."
        )


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A parsed, validated and compiled rule set: one version of the program's rules."""

    id: str
    version: str
    effective_from: date
    #: SHA-256 (hex) of the rule-set file's bytes.
    sha256: str
    rules: tuple[Rule, ...]
    money: MoneyTable
    parameters: Mapping[str, Any]
    title: str | None = None
    description: str | None = None
    #: Where the rule set came from (a file name), for messages.
    source: str = "<rules>"
    #: Content sections the expressions reference: only these are converted per application.
    variables: frozenset[str] = frozenset(CONTENT_VARIABLES)
    #: Per section, the fields the expressions read (see :func:`_fields_read`); a section not
    #: named here is converted whole. Converting values into CEL is the dominant cost of an
    #: evaluation, so only what some expression can see is converted.
    fields: Mapping[str, _Fields | None] = field(default_factory=dict)
    #: Non-fatal findings of validation (e.g. a rule that errors on sparse applications).
    warnings: tuple[str, ...] = ()
    #: The engine's functions the programs call (``months_before``, and the precompiled
    #: patterns of :func:`_precompiled_patterns`), bound into every evaluation's context.
    functions: Mapping[str, Any] = field(default_factory=dict)
    #: ``months_before(submitted_at, n)`` computed once per evaluation, for each ``n`` here,
    #: and bound as ``submitted_at_months_before_<n>`` (see :func:`_precomputed_instants`).
    instants: tuple[int, ...] = ()
    #: The rule set as it was before :attr:`instants` were precomputed: it decides when they
    #: cannot be (no submission time, or a date out of range), so errors stay CEL's own.
    fallback: RuleSet | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """``id version`` for messages."""
        return f"{self.id} {self.version}"

    def evaluate(
        self, content: ApplicationContent, submitted_at: date | datetime | None = None
    ) -> Decision:
        """Evaluate every rule against ``content`` submitted at ``submitted_at``.

        See the module doc for the semantics. A date counts as its first instant (UTC). Without
        ``submitted_at``, ``submitted_at`` is ``null`` and a rule that uses it cannot pass.
        """
        try:
            context = self._context(content, submitted_at)
        except _NoInstant:
            assert self.fallback is not None
            return self.fallback.evaluate(content, submitted_at)
        outcomes = tuple(_evaluate_rule(rule, content, context) for rule in self.rules)
        return Decision.from_outcomes(self, outcomes)

    def _context(
        self, content: ApplicationContent, submitted_at: date | datetime | None
    ) -> cel.Context:
        bindings = self._bindings(content, submitted_at)
        return cel.Context(bindings, dict(self.functions) if self.functions else None)

    def _bindings(
        self, content: ApplicationContent, submitted_at: date | datetime | None = None
    ) -> dict[str, Any]:
        # Converting values into CEL is the dominant per-application cost, so only the sections
        # some expression references are converted.
        fields, money = self.fields, self.money
        bindings: dict[str, Any] = {
            name: _cel_fields(getattr(content, name), fields.get(name), money)
            for name in CONTENT_VARIABLES
            if name in self.variables
        }
        if PARAMS_VARIABLE in self.variables:
            bindings[PARAMS_VARIABLE] = dict(self.parameters)
        if SUBMITTED_AT_VARIABLE in self.variables or self.instants:
            at = _instant(submitted_at)
            if SUBMITTED_AT_VARIABLE in self.variables:
                bindings[SUBMITTED_AT_VARIABLE] = at
            for months in self.instants:
                if at is None:
                    raise _NoInstant
                try:
                    bindings[f"{_INSTANT_VARIABLE}{months}"] = months_before(at, months)
                except ValueError as exc:  # out of the calendar's range
                    raise _NoInstant from exc
        return bindings


class _NoInstant(Exception):
    """A precomputed instant cannot be computed: the fallback rule set decides."""


def months_before(at: datetime, months: int) -> datetime:
    """``at`` moved back ``months`` calendar months; the day is clamped to the month's end."""
    if not isinstance(at, datetime):
        raise ValueError(f"months_before needs a timestamp, not {at!r}")
    if isinstance(months, bool) or not isinstance(months, int) or months < 0:
        raise ValueError(f"months_before needs a whole number of months >= 0, not {months!r}")
    index = at.year * 12 + (at.month - 1) - months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)


#: The functions expressions may call besides CEL's own.
_FUNCTIONS: Final[Mapping[str, Any]] = types.MappingProxyType({"months_before": months_before})


def _instant(at: date | datetime | None) -> datetime | None:
    if at is None or isinstance(at, datetime):
        if at is not None and at.tzinfo is None:
            raise ValueError("a naive datetime is ambiguous; pass an aware (UTC) datetime")
        return at
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


def content_sha256(data: bytes) -> str:
    """The content hash of a rule-set file: SHA-256 of its bytes, lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def parse_rule_set(data: bytes, source: str = "<rules>") -> RuleSet:
    """Parse, validate and compile a rule set from the bytes of its TOML file.

    Every problem is collected before raising, so one run shows them all.

    Raises:
        RuleSetError: not UTF-8 TOML, unknown or missing keys, a bad id/version/date, a CEL
            expression that does not compile or references an unknown variable, duplicate rule
            ids, a rule without an explanation, a ``requires`` path the contract does not have,
            or a rule that errors on the contract's complete example application.
    """
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RuleSetError(source, [f"not UTF-8 text: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise RuleSetError(source, [f"not valid TOML: {exc}"]) from exc

    problems: list[str] = []
    _unknown_keys(document, _TOP_LEVEL_KEYS, "the file", problems)
    header = _table(document, "rule_set", problems, required=True)
    _unknown_keys(header, _RULE_SET_KEYS, "[rule_set]", problems)
    rule_set_id = _matching(header, "id", _RULE_SET_ID, "[rule_set] id", problems)
    version = _matching(header, "version", _VERSION, "[rule_set] version", problems)
    effective_from = _effective_from(header.get("effective_from"), problems)
    title = _optional_text(header, "title", "[rule_set] title", problems)
    description = _optional_text(header, "description", "[rule_set] description", problems)
    parameters = _parameters(_table(document, "parameters", problems), problems)
    money = _money_table(_table(document, "money", problems), problems)
    rules = _rules(document.get("rules"), problems)
    if problems:
        raise RuleSetError(source, problems)

    assert rule_set_id is not None
    assert version is not None
    assert effective_from is not None
    referenced: set[str] = set()
    called: set[str] = set()
    for rule in rules:
        assert rule.program is not None
        referenced.update(rule.program.variables())
        called.update(rule.program.functions())
    rule_set = RuleSet(
        id=rule_set_id,
        version=version,
        effective_from=effective_from,
        sha256=content_sha256(data),
        rules=tuple(rules),
        money=money,
        parameters=types.MappingProxyType(parameters),
        title=title,
        description=description,
        source=source,
        variables=frozenset(referenced & _KNOWN_VARIABLES),
        functions={name: _FUNCTIONS[name] for name in called & _FUNCTIONS.keys()},
    )
    problems, warnings = _trial_runs(rule_set)
    if problems:
        raise RuleSetError(source, problems)
    return _cheaper(dataclasses.replace(rule_set, warnings=tuple(warnings)))


# --- cheaper evaluation ---------------------------------------------------------------------


def _cheaper(rule_set: RuleSet) -> RuleSet:
    """``rule_set`` with its per-application work reduced, deciding exactly the same.

    Three steps, each kept only if the result decides the contract's complete and sparse
    examples exactly as ``rule_set`` does: binding only the content fields the expressions
    read (:func:`_fields_read`), compiling the ``[parameters]`` into the programs as
    literals (:func:`_inline_parameters`), so that the constants are not converted into CEL
    for every application, matching literal ``.matches()`` patterns with regexes compiled
    once (:func:`_precompiled_patterns`), and computing ``months_before(submitted_at, n)``
    once per evaluation (:func:`_precomputed_instants`). The rules keep their expressions as
    written.
    """
    examples = (_example_content(), _sparse_content())
    # Judged as submitted when the rule set took effect, so rules on ``submitted_at`` run too.
    at = rule_set.effective_from
    expected = [rule_set.evaluate(content, at) for content in examples]
    best = rule_set
    steps = (
        lambda rs: dataclasses.replace(rs, fields=_fields_read(r.expression for r in rs.rules)),
        _inline_parameters,
        _precompiled_patterns,
        _precomputed_instants,
    )
    for step in steps:
        candidate = step(best)
        if candidate is not None and [candidate.evaluate(c, at) for c in examples] == expected:
            best = candidate
    return best


#: ``params.<name>`` in an expression (not a field of something else named params).
_PARAMETER = re.compile(r"(?<![\w.])params\s*\.\s*([A-Za-z_]\w*)")
_WORD_PARAMS = re.compile(r"(?<![\w.])params\b")


def _inline_parameters(rule_set: RuleSet) -> RuleSet | None:
    """``rule_set`` with every ``params.<name>`` compiled in as a literal; ``None`` if some
    expression uses ``params`` otherwise, or a value has no CEL literal."""
    if PARAMS_VARIABLE not in rule_set.variables:
        return None
    literals: dict[str, str] = {}
    for name, value in rule_set.parameters.items():
        literal = _cel_literal(value)
        if literal is not None:
            literals[name] = f"({literal})"
    rules: list[Rule] = []
    for rule in rule_set.rules:
        unknown = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal unknown
            literal = literals.get(match.group(1))
            if literal is None:
                unknown = True
                return match.group(0)
            return literal

        text = _PARAMETER.sub(substitute, rule.expression)
        if unknown or _WORD_PARAMS.search(text):
            return None
        try:
            program = cel.compile(text)
        except Exception:  # e.g. has(params.x): not an expression once inlined
            return None
        rules.append(dataclasses.replace(rule, program=program, compiled_from=text))
    return dataclasses.replace(
        rule_set, rules=tuple(rules), variables=rule_set.variables - {PARAMS_VARIABLE}
    )


#: ``.matches('pattern')`` with a literal pattern holding no escapes (so a raw literal and a
#: plain one mean the same).
_MATCHES_CALL = re.compile(r"""\.\s*matches\s*\(\s*(?:'([^'\\\n]*)'|"([^"\\\n]*)")\s*\)""")
#: The characters a pattern may hold to be run by Python's ``re`` (see :func:`python_pattern`).
_PATTERN_CHARS = re.compile(r"[A-Za-z0-9 ^$.|()\[\]*+?,/:;_@#%=<>!'\"-]*")
#: A quantifier right after a group: nested repetition, where backtracking can blow up.
_GROUP_REPEAT = re.compile(r"\)[*+]")
#: At most this many unbounded repetitions, which keeps Python's backtracking polynomial.
_MAX_REPEATS: Final = 2
#: The name prefix of the functions that run precompiled patterns.
_PATTERN_FUNCTION: Final = "precompiled_pattern_"


def python_pattern(pattern: str) -> re.Pattern[str] | None:
    r"""``pattern`` (RE2 syntax, as CEL's ``matches`` reads it) as a Python regex that finds a
    match in exactly the same strings, or ``None`` when that cannot be vouched for.

    Only a plain subset qualifies: literal characters, ``.``, ``^``, ``$``, groups,
    alternation, ``*``, ``+``, ``?`` and character classes, with no escapes, no flags, no
    counted repetition, no class set operations (``&&``, ``--``, ``~~``), no nested classes,
    no repeated group and at most two unbounded repetitions (Python backtracks where RE2 does
    not). ``$`` becomes ``\Z``: Python's ``$`` also matches before a final newline, RE2's not.
    """
    if not _PATTERN_CHARS.fullmatch(pattern) or _GROUP_REPEAT.search(pattern):
        return None
    if "(?" in pattern or "--" in pattern:
        return None
    out: list[str] = []
    in_class = False
    repeats = 0
    for index, char in enumerate(pattern):
        if in_class:
            if char == "[":
                return None
            if char == "]":
                in_class = False
            out.append(char)
            continue
        if char == "[":
            if pattern.startswith(("[]", "[^]"), index):
                return None
            in_class = True
        elif char in "*+":
            repeats += 1
        elif char == "$":
            out.append(r"\Z")
            continue
        out.append(char)
    if in_class or repeats > _MAX_REPEATS:
        return None
    try:
        return re.compile("".join(out))
    except re.error:
        return None


def _pattern_function(compiled: re.Pattern[str]) -> Any:
    search = compiled.search

    def matches(text: Any) -> bool:
        if not isinstance(text, str):
            raise ValueError(f"matches needs a string, not {type(text).__name__}")
        return search(text) is not None

    return matches


def _outside_strings(text: str) -> list[bool]:
    """Per character of a CEL expression, whether it lies outside every string literal."""
    outside: list[bool] = []
    quote, escaped = "", False
    for char in text:
        if quote:
            outside.append(False)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        else:
            if char in "'\"":
                quote = char
                outside.append(False)
            else:
                outside.append(True)
    return outside


def _rewrite_calls(
    rule_set: RuleSet,
    function: str,
    call: re.Pattern[str],
    replacement: Callable[[re.Match[str]], str | None],
) -> list[Rule] | None:
    """``rule_set``'s rules, each program that calls ``function`` recompiled with every match
    of ``call`` outside string literals replaced by ``replacement(match)``; ``None`` if no
    program calls it, a replacement is ``None``, or a call is left that ``call`` missed."""
    rules: list[Rule] = []
    refused = changed = False

    def substitute(match: re.Match[str], outside: list[bool]) -> str:
        nonlocal refused
        if not outside[match.start()]:
            return match.group(0)
        text = replacement(match)
        if text is None:
            refused = True
            return match.group(0)
        return text

    for rule in rule_set.rules:
        assert rule.program is not None
        if function not in rule.program.functions():
            rules.append(rule)
            continue
        text = rule.compiled_from or rule.expression
        outside = _outside_strings(text)
        rewritten = call.sub(functools.partial(substitute, outside=outside), text)
        try:
            program = cel.compile(rewritten)
        except Exception:
            return None
        if refused or function in program.functions():
            return None
        rules.append(dataclasses.replace(rule, program=program, compiled_from=rewritten))
        changed = True
    return rules if changed else None


def _precompiled_patterns(rule_set: RuleSet) -> RuleSet | None:
    """``rule_set`` with every ``x.matches('literal')`` a call of a function that runs the
    pattern compiled once (CEL compiles it on every call); ``None`` if there is none, or one
    pattern is outside the subset :func:`python_pattern` vouches for."""
    functions = dict(rule_set.functions)
    names: dict[str, str] = {}

    def replacement(match: re.Match[str]) -> str | None:
        pattern = match.group(1) if match.group(1) is not None else match.group(2)
        name = names.get(pattern)
        if name is None:
            compiled = python_pattern(pattern)
            if compiled is None:
                return None
            name = names[pattern] = f"{_PATTERN_FUNCTION}{len(names)}"
            functions[name] = _pattern_function(compiled)
        return f".{name}()"

    rules = _rewrite_calls(rule_set, "matches", _MATCHES_CALL, replacement)
    if rules is None:
        return None
    return dataclasses.replace(rule_set, rules=tuple(rules), functions=functions)


#: ``months_before(submitted_at, n)`` with a literal ``n`` (parameters inlined: ``(12)``).
_MONTHS_BEFORE_CALL = re.compile(
    r"(?<![\w.])months_before\s*\(\s*submitted_at\s*,\s*(\(\s*)?([0-9]+)\s*(?(1)\))\s*\)"
)
#: The prefix of the variables holding precomputed instants.
_INSTANT_VARIABLE: Final = "submitted_at_months_before_"


def _precomputed_instants(rule_set: RuleSet) -> RuleSet | None:
    """``rule_set`` with every ``months_before(submitted_at, n)`` of a literal ``n`` read from
    a variable computed once per evaluation, instead of a call into Python (and back) per
    rule; ``None`` if there is none, or a call this rewrite does not cover."""
    instants: dict[int, None] = {}

    def replacement(match: re.Match[str]) -> str:
        months = int(match.group(2))
        instants[months] = None
        return f"{_INSTANT_VARIABLE}{months}"

    rules = _rewrite_calls(rule_set, "months_before", _MONTHS_BEFORE_CALL, replacement)
    if rules is None:
        return None
    called = {name for rule in rules if rule.program for name in rule.program.functions()}
    variables = {name for rule in rules if rule.program for name in rule.program.variables()}
    return dataclasses.replace(
        rule_set,
        rules=tuple(rules),
        functions={k: v for k, v in rule_set.functions.items() if k in called},
        variables=(
            rule_set.variables
            if SUBMITTED_AT_VARIABLE in variables
            else rule_set.variables - {SUBMITTED_AT_VARIABLE}
        ),
        instants=tuple(instants),
        fallback=rule_set,
    )


def _cel_literal(value: Any) -> str | None:
    """``value`` (a ``[parameters]`` value) as a CEL literal, or ``None`` if it has none."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        # JSON string syntax is CEL string syntax when non-ASCII is left as it is.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        items = [_cel_literal(item) for item in value]
        return None if None in items else "[" + ", ".join(typing.cast(list[str], items)) + "]"
    if isinstance(value, dict):
        pairs = [(_cel_literal(k), _cel_literal(v)) for k, v in value.items()]
        if any(k is None or v is None for k, v in pairs):
            return None
        return "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    return None


# --- catalog --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleCatalog:
    """Every known rule-set version, ordered by ``effective_from``."""

    rule_sets: tuple[RuleSet, ...]

    def in_force(self, at: date | datetime) -> RuleSet:
        """The rule set in force at ``at``: the latest ``effective_from`` on or before it.

        A datetime must be timezone-aware; its UTC date counts.

        Raises:
            NoRuleSetInForce: ``at`` is before every rule set.
        """
        on = _utc_date(at)
        chosen: RuleSet | None = None
        for rule_set in self.rule_sets:
            if rule_set.effective_from <= on:
                chosen = rule_set
        if chosen is None:
            earliest = self.rule_sets[0].effective_from if self.rule_sets else None
            raise NoRuleSetInForce(on, earliest)
        return chosen

    def assess(self, content: ApplicationContent, submitted_at: date | datetime) -> Decision:
        """Evaluate ``content`` with the rule set in force at ``submitted_at``."""
        return self.in_force(submitted_at).evaluate(content, submitted_at)


def build_catalog(rule_sets: Iterable[RuleSet], source: str = "<rule sets>") -> RuleCatalog:
    """A catalog of ``rule_sets``; refuses an empty one and ambiguous versions or dates.

    Raises:
        RuleSetError: no rule set, a version listed twice, or two rule sets effective on the
            same date (the one in force would be ambiguous).
    """
    ordered = sorted(rule_sets, key=lambda r: r.effective_from)
    problems: list[str] = []
    if not ordered:
        problems.append("no rule set found")
    seen_versions: dict[tuple[str, str], str] = {}
    seen_dates: dict[date, str] = {}
    for rule_set in ordered:
        key = (rule_set.id, rule_set.version)
        if key in seen_versions:
            problems.append(
                f"{rule_set.label} is defined twice ({seen_versions[key]}, {rule_set.source})"
            )
        seen_versions.setdefault(key, rule_set.source)
        if rule_set.effective_from in seen_dates:
            problems.append(
                f"{seen_dates[rule_set.effective_from]} and {rule_set.source} both take effect "
                f"on {rule_set.effective_from}"
            )
        seen_dates.setdefault(rule_set.effective_from, rule_set.source)
    if problems:
        raise RuleSetError(source, problems)
    return RuleCatalog(tuple(ordered))


def _utc_date(at: date | datetime) -> date:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("a naive datetime is ambiguous; pass an aware (UTC) datetime")
        return at.astimezone(UTC).date()
    return at


# --- decisions ------------------------------------------------------------------------------


class RuleStatus(StrEnum):
    """One rule's result."""

    PASSED = "passed"
    FAILED = "failed"
    NEEDS_INFORMATION = "needs_information"


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """The result of one rule against one application."""

    rule_id: str
    status: RuleStatus
    #: Firm-readable explanation of the result.
    explanation: str
    #: Content fields this rule needs but could not use (needs information only).
    missing_fields: tuple[str, ...] = ()
    #: The evaluation error, for operators and auditors; never shown to the firm.
    error: str | None = None

    @property
    def passed(self) -> bool:
        """Whether the rule passed."""
        return self.status is RuleStatus.PASSED

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record of this outcome (the decision store keeps these)."""
        return {
            "rule_id": self.rule_id,
            "status": self.status.value,
            "passed": self.passed,
            "explanation": self.explanation,
            "missing_fields": list(self.missing_fields),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one rule set against one application, and which rule set it was."""

    rule_set_id: str
    rule_set_version: str
    rule_set_sha256: str
    rule_set_effective_from: date
    outcome: EligibilityOutcome
    results: tuple[RuleOutcome, ...]
    #: Every missing field, in rule order, without repeats.
    missing_fields: tuple[str, ...]

    @classmethod
    def from_outcomes(cls, rule_set: RuleSet, outcomes: Sequence[RuleOutcome]) -> Decision:
        """Combine rule outcomes: any failure is ineligible, then any gap needs information."""
        statuses = {outcome.status for outcome in outcomes}
        if RuleStatus.FAILED in statuses:
            verdict = EligibilityOutcome.INELIGIBLE
        elif RuleStatus.NEEDS_INFORMATION in statuses:
            verdict = EligibilityOutcome.NEEDS_INFORMATION
        else:
            verdict = EligibilityOutcome.ELIGIBLE
        missing = dict.fromkeys(path for outcome in outcomes for path in outcome.missing_fields)
        return cls(
            rule_set_id=rule_set.id,
            rule_set_version=rule_set.version,
            rule_set_sha256=rule_set.sha256,
            rule_set_effective_from=rule_set.effective_from,
            outcome=verdict,
            results=tuple(outcomes),
            missing_fields=tuple(missing),
        )

    @property
    def failed(self) -> tuple[RuleOutcome, ...]:
        """The rules that failed."""
        return tuple(r for r in self.results if r.status is RuleStatus.FAILED)

    def to_event(
        self, *, application_id: str, application_revision: int, assessed_at: datetime
    ) -> EligibilityAssessed:
        """The ``eligibility.assessed`` payload of this decision."""
        return EligibilityAssessed(
            application_id=application_id,
            application_revision=application_revision,
            outcome=self.outcome,
            rule_set_id=self.rule_set_id,
            rule_set_version=self.rule_set_version,
            rule_set_sha256=self.rule_set_sha256,
            rule_set_effective_from=self.rule_set_effective_from,
            rule_results=[
                RuleResult(rule_id=r.rule_id, passed=r.passed, explanation=r.explanation)
                for r in self.results
            ],
            missing_fields=list(self.missing_fields),
            assessed_at=assessed_at,
        )


# --- evaluation -----------------------------------------------------------------------------


def _evaluate_rule(rule: Rule, content: ApplicationContent, context: cel.Context) -> RuleOutcome:
    if rule.steps:
        missing = tuple(
            path
            for path, steps in zip(rule.requires, rule.steps, strict=True)
            if _is_missing(content, steps)
        )
        if missing:
            return RuleOutcome(
                rule.id, RuleStatus.NEEDS_INFORMATION, rule.missing_text(missing), missing
            )
    assert rule.program is not None
    try:
        result = rule.program.execute(context)
    except Exception as exc:  # any CEL failure is a rule outcome, not a crash
        return _errored(rule, f"{type(exc).__name__}: {exc}")
    if result is True:
        return rule.on_true
    if result is False:
        return rule.on_false
    return _errored(rule, f"the expression gave {type(result).__name__} {result!r}, not a bool")


def _errored(rule: Rule, detail: str) -> RuleOutcome:
    detail = detail[:MAX_ERROR_DETAIL]
    if rule.requires:
        return RuleOutcome(
            rule.id,
            RuleStatus.NEEDS_INFORMATION,
            rule.missing_text(rule.requires),
            rule.requires,
            error=detail,
        )
    return RuleOutcome(rule.id, RuleStatus.FAILED, rule.explanation, error=detail)


def _path_steps(path: str) -> tuple[tuple[str, int | None], ...]:
    """``"a.b[2]"`` as ``(("a", None), ("b", None), ("", 2))``."""
    return tuple(
        (name, None) if name else ("", int(index)) for name, index in _PATH_TOKEN.findall(path)
    )


def _is_missing(content: ApplicationContent, steps: Sequence[tuple[str, int | None]]) -> bool:
    value: Any = content
    for name, index in steps:
        if value is None:
            return True
        if index is None:
            value = getattr(value, name, None)
        elif not isinstance(value, list) or index >= len(value):
            return True
        else:
            value = value[index]
    return value is None or (isinstance(value, str | list) and len(value) == 0)


#: The fields of a content value that expressions read: each name maps to the fields read
#: below it, or to ``None`` when its whole value is converted. A list's entry maps
#: :data:`_ITEMS` to what is read of each element; a list whose elements are never read (only
#: its size, or a macro whose body ignores them) has no :data:`_ITEMS`, and each element that
#: is a model is bound as an empty map.
_Fields = dict[str, "_Fields | None"]
#: The key of a list's element fields in :data:`_Fields` (never a field name).
_ITEMS: Final = "[]"
#: Comprehension macros: ``list.all(x, body)`` reads of each element what ``body`` reads of
#: ``x``.
_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
_NAME = r"[A-Za-z_]\w*"
#: A content section and the member names that follow it (``firm.parent_companies.all``).
_MEMBER_PATH = re.compile(
    r"(?<![\w.])(" + "|".join(CONTENT_VARIABLES) + rf")\b((?:\s*\.\s*{_NAME})*)"
)
#: ``size(`` right before a path.
_SIZE_CALL = re.compile(r"(?<![\w.])size\s*\(\s*$")


def _fields_read(expressions: Iterable[str]) -> dict[str, _Fields | None]:
    """Per content section, the fields ``expressions`` read (``None``: the whole section).

    A path is followed through the contract's models as long as each name is a field; the value
    where it stops (money, a method call, or the section named alone) is converted whole. A
    list whose path ends in a comprehension macro (``.exists(d, d.kind == 'x')``) has of each
    element only what the macro's body reads of its variable; a list only measured
    (``size(list)``, ``list.size()``) has none of its elements' fields. Names that are not
    fields only widen what is converted, so a scan that sees too much costs time, never a
    wrong decision.
    """
    read: dict[str, _Fields | None] = {}
    roots = {
        section: (read, section, ApplicationContent.model_fields[section].annotation)
        for section in CONTENT_VARIABLES
    }
    for expression in expressions:
        _read_paths(expression, _MEMBER_PATH, roots)
    return read


_Root = tuple[_Fields, str, Any]


def _read_paths(text: str, pattern: re.Pattern[str], roots: Mapping[str, _Root]) -> None:
    """Add to the roots' nodes every path ``pattern`` finds in ``text`` (see _fields_read)."""
    for match in pattern.finditer(text):
        root, rest = match.groups()
        names = [name.strip() for name in rest.split(".")[1:]]
        node, key, model = roots[root]
        after = text[match.end() :].lstrip()
        if _SIZE_CALL.search(text[: match.start()]) and after.startswith(")"):
            _add_path(node, key, model, names, measured=True)
        elif names and after.startswith("("):
            call, arguments = names[-1], _call_arguments(after)
            variable, _, body = (arguments or "").partition(",")
            if call in _MACROS and re.fullmatch(_NAME, variable.strip()) and body:
                _add_path(node, key, model, names[:-1], macro=(variable.strip(), body))
            elif call == "size" and arguments is not None and not arguments.strip():
                _add_path(node, key, model, names[:-1], measured=True)
            else:
                _add_path(node, key, model, names)
        else:
            _add_path(node, key, model, names)


def _call_arguments(text: str) -> str | None:
    """What is between ``text``'s opening parenthesis and the one that closes it (string
    literals skipped), or ``None`` when it does not close."""
    depth = 0
    for index, (char, outside) in enumerate(zip(text, _outside_strings(text), strict=True)):
        if not outside:
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return text[1:index]
    return None


def _add_path(
    node: _Fields,
    key: str,
    model: Any,
    names: Sequence[str],
    *,
    measured: bool = False,
    macro: tuple[str, str] | None = None,
) -> None:
    """Mark ``names`` below ``node[key]`` (of type ``model``) as read: the value they end at
    whole, or, for a list that is ``measured`` or iterated by a ``macro`` (its variable and
    body), only what the body reads of each element."""
    for name in names:
        if key in node and node[key] is None:
            return  # already converted whole
        model = _unwrap(model)
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        if not is_model or issubclass(model, Money) or name not in model.model_fields:
            node[key] = None
            return
        below = node.setdefault(key, {})
        assert below is not None
        node, key = below, name
        model = model.model_fields[name].annotation
    item = _list_item(model)
    if item is None or not (measured or macro):
        node[key] = None
        return
    if key in node and node[key] is None:
        return
    entry = node.setdefault(key, {})
    assert entry is not None
    if macro is not None:
        variable, body = macro
        element = re.compile(rf"(?<![\w.])({re.escape(variable)})\b((?:\s*\.\s*{_NAME})*)")
        _read_paths(body, element, {variable: (entry, _ITEMS, item)})


def _list_item(annotation: Any) -> Any | None:
    """The element type of a list annotation (``X | None`` stripped), else ``None``."""
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (list, tuple):
        args = typing.get_args(annotation)
        if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
            return args[0]
    return None


def _cel_fields(value: Any, fields: _Fields | None, money: MoneyTable) -> Any:
    """:func:`_cel_value` of only the ``fields`` of ``value`` (all of it for ``None``)."""
    if fields is None:
        return _cel_value(value, money)
    if isinstance(value, list | tuple):
        items = fields.get(_ITEMS, {})
        return [_cel_fields(item, items, money) for item in value]
    if not isinstance(value, BaseModel):
        return _cel_value(value, money)
    return {name: _cel_fields(getattr(value, name), below, money) for name, below in fields.items()}


class _Kind(Enum):
    """How :func:`_cel_value` converts values of one Python type."""

    AS_IS = "as_is"
    ENUM = "enum"
    FLOAT = "float"
    MONEY = "money"
    MODEL = "model"
    LIST = "list"
    DATE = "date"


#: The conversion of each type met so far: the checks below run once per type, not per value.
_KINDS: dict[type, _Kind] = {}


def _kind(tp: type) -> _Kind:
    """The conversion of values of type ``tp`` (cached in :data:`_KINDS`)."""
    kind = _KINDS.get(tp)
    if kind is None:
        kind = _KINDS[tp] = _classify(tp)
    return kind


def _classify(tp: type) -> _Kind:
    # The order matters: a datetime is a date, a StrEnum is a str, Money is a model.
    if issubclass(tp, bool | int | float | datetime):
        return _Kind.AS_IS
    if issubclass(tp, Enum):
        return _Kind.ENUM
    if issubclass(tp, str):
        return _Kind.AS_IS
    if issubclass(tp, Decimal):
        return _Kind.FLOAT
    if issubclass(tp, Money):
        return _Kind.MONEY
    if issubclass(tp, BaseModel):
        return _Kind.MODEL
    if issubclass(tp, list | tuple):
        return _Kind.LIST
    if issubclass(tp, date):
        return _Kind.DATE
    raise TypeError(f"no CEL binding for {tp.__name__}")


def _cel_value(value: Any, money: MoneyTable) -> Any:
    """A contract value as CEL sees it (see the module doc)."""
    if value is None:
        return None
    kind = _kind(type(value))
    if kind is _Kind.AS_IS:
        return value
    if kind is _Kind.MODEL:
        return {name: _cel_value(getattr(value, name), money) for name in type(value).model_fields}
    if kind is _Kind.LIST:
        return [_cel_value(item, money) for item in value]
    if kind is _Kind.ENUM:
        return value.value
    if kind is _Kind.FLOAT:
        return float(value)
    if kind is _Kind.MONEY:
        converted = money.to_base(value)
        return {
            "amount": float(value.amount),
            "currency": value.currency,
            money.base_key: None if converted is None else float(converted),
        }
    return value.isoformat()  # a date


# --- parsing helpers ------------------------------------------------------------------------


def _unknown_keys(
    table: Mapping[str, Any], allowed: frozenset[str], where: str, problems: list[str]
) -> None:
    for key in table:
        if key not in allowed:
            problems.append(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def _table(
    document: Mapping[str, Any], key: str, problems: list[str], *, required: bool = False
) -> dict[str, Any]:
    value = document.get(key)
    if value is None:
        if required:
            problems.append(f"missing [{key}] table")
        return {}
    if not isinstance(value, dict):
        problems.append(f"[{key}] must be a table")
        return {}
    return value


def _matching(
    table: Mapping[str, Any], key: str, pattern: re.Pattern[str], where: str, problems: list[str]
) -> str | None:
    value = table.get(key)
    if value is None:
        problems.append(f"{where} is missing")
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        problems.append(f"{where} {value!r} must match {pattern.pattern}")
        return None
    return value


def _optional_text(
    table: Mapping[str, Any], key: str, where: str, problems: list[str]
) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where} must be non-empty text")
        return None
    if len(value.strip()) > MAX_EXPLANATION:
        problems.append(f"{where} is longer than {MAX_EXPLANATION} characters")
        return None
    return value.strip()


def _effective_from(value: Any, problems: list[str]) -> date | None:
    where = "[rule_set] effective_from"
    if value is None:
        problems.append(f"{where} is missing (a date such as 2026-01-01)")
        return None
    if isinstance(value, datetime):  # a datetime is a date subclass: check it first
        problems.append(f"{where} must be a date (YYYY-MM-DD), not a date-time: {value}")
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    problems.append(f"{where} must be a date (YYYY-MM-DD), got {value!r}")
    return None


def _parameters(table: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    for key, value in table.items():
        problem = _parameter_problem(value)
        if problem:
            problems.append(f"[parameters] {key}: {problem}")
    return dict(table)


def _parameter_problem(value: Any) -> str | None:
    # CEL has no date type; TOML dates would fail at the first evaluation, so refuse them here.
    if isinstance(value, bool | int | float | str):
        return None
    if isinstance(value, list):
        return next((p for p in map(_parameter_problem, value) if p), None)
    if isinstance(value, dict):
        return next((p for p in map(_parameter_problem, value.values()) if p), None)
    return f"{type(value).__name__} values are not supported (use text, numbers or booleans)"


def _money_table(table: Mapping[str, Any], problems: list[str]) -> MoneyTable:
    _unknown_keys(table, _MONEY_KEYS, "[money]", problems)
    base = table.get("base_currency", "EUR")
    base_problem = currency_problem(base) if isinstance(base, str) else ("", "not a string")
    if base_problem is not None:
        problems.append(f"[money] base_currency {base!r}: {base_problem[1]}")
        base = "EUR"
    raw_rates = table.get("rates", {})
    if not isinstance(raw_rates, dict):
        problems.append('[money] rates must be a table of CURRENCY = "rate"')
        raw_rates = {}
    rates: dict[str, Decimal] = {base: Decimal(1)}
    for code, raw in raw_rates.items():
        where = f"[money] rates.{code}"
        code_problem = currency_problem(code)
        if code_problem is not None:
            problems.append(f"{where}: {code_problem[1]}")
            continue
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            problems.append(
                f'{where}: write the rate as a decimal string ("0.92"); floats are inexact'
            )
            continue
        try:
            rate = Decimal(raw)
        except InvalidOperation:
            problems.append(f"{where}: {raw!r} is not a decimal number")
            continue
        if not rate.is_finite() or rate <= 0:
            problems.append(f"{where}: the rate must be a positive number")
            continue
        if code == base and rate != 1:
            problems.append(f"{where}: the base currency's rate must be 1")
            continue
        rates[code] = rate
    return MoneyTable(base_currency=base, rates=types.MappingProxyType(rates))


def _rules(value: Any, problems: list[str]) -> list[Rule]:
    if value is None:
        problems.append("no rules: add at least one [[rules]] table")
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        problems.append("rules must be an array of tables ([[rules]])")
        return []
    if not value:
        problems.append("no rules: add at least one [[rules]] table")
    if len(value) > MAX_RULES:
        problems.append(f"{len(value)} rules; a decision holds at most {MAX_RULES}")
    rules: list[Rule] = []
    first_seen: dict[str, int] = {}
    for number, table in enumerate(value, start=1):
        rule = _rule(number, table, problems)
        if rule is None:
            continue
        if rule.id in first_seen:
            problems.append(
                f"duplicate rule id {rule.id!r} (rules #{first_seen[rule.id]} and #{number})"
            )
            continue
        first_seen[rule.id] = number
        rules.append(rule)
    return rules


def _rule(number: int, table: Mapping[str, Any], problems: list[str]) -> Rule | None:
    raw_id = table.get("id")
    where = f"rule #{number}" + (f" {raw_id!r}" if isinstance(raw_id, str) else "")
    before = len(problems)
    _unknown_keys(table, _RULE_KEYS, where, problems)
    rule_id = _matching(table, "id", _RULE_ID, f"{where}: id", problems)

    explanation = table.get("explanation")
    if not isinstance(explanation, str) or not explanation.strip():
        problems.append(f"{where}: no explanation (the text a firm reads when the rule fails)")
        explanation = None
    elif len(explanation.strip()) > MAX_EXPLANATION:
        problems.append(f"{where}: explanation longer than {MAX_EXPLANATION} characters")
    description = _optional_text(table, "description", f"{where}: description", problems)
    passed = _optional_text(table, "pass_explanation", f"{where}: pass_explanation", problems)
    missing = _optional_text(
        table, "missing_explanation", f"{where}: missing_explanation", problems
    )

    requires = table.get("requires", [])
    if not isinstance(requires, list) or not all(isinstance(p, str) for p in requires):
        problems.append(f"{where}: requires must be a list of field paths")
        requires = []
    for path in requires:
        if not _FIELD_PATH.fullmatch(path):
            problems.append(f"{where}: requires {path!r} is not a field path like firm.legal_name")
        elif not _path_in_contract(path):
            problems.append(f"{where}: requires {path!r}, which the application content lacks")
    if len(set(requires)) != len(requires):
        problems.append(f"{where}: requires lists a field twice")

    failure_raw = table.get("failure", RuleFailure.INELIGIBLE.value)
    try:
        failure = RuleFailure(failure_raw)
    except ValueError:
        problems.append(
            f"{where}: failure {failure_raw!r} must be 'ineligible' or 'needs_information'"
        )
        failure = RuleFailure.INELIGIBLE
    if failure is RuleFailure.NEEDS_INFORMATION and not requires:
        problems.append(f"{where}: failure = 'needs_information' needs the fields in requires")

    expression = table.get("expression")
    program: cel.Program | None = None
    if not isinstance(expression, str) or not expression.strip():
        problems.append(f"{where}: no expression")
        expression = None
    else:
        program = _compile(expression, where, problems)

    if len(problems) > before or rule_id is None or expression is None or explanation is None:
        return None
    return Rule(
        id=rule_id,
        expression=expression,
        explanation=explanation.strip(),
        description=description,
        pass_explanation=passed,
        missing_explanation=missing,
        requires=tuple(requires),
        failure=failure,
        program=program,
    )


def _compile(expression: str, where: str, problems: list[str]) -> cel.Program | None:
    try:
        program = cel.compile(expression)
    except Exception as exc:  # the binding raises ValueError; be safe
        problems.append(f"{where}: CEL does not compile: {exc}")
        return None
    bound = set(_MACRO_BINDER.findall(expression))
    unknown = sorted(set(program.variables()) - _KNOWN_VARIABLES - bound)
    if unknown:
        problems.append(
            f"{where}: unknown variable(s) {', '.join(unknown)}; expressions see "
            f"{', '.join(sorted(_KNOWN_VARIABLES))}"
        )
        return None
    return program


def _path_in_contract(path: str) -> bool:
    """Whether ``path`` names a field of :class:`ApplicationContent` (indexes into lists)."""
    current: Any = ApplicationContent
    for name, _index in _PATH_TOKEN.findall(path):
        current = _unwrap(current)
        if name:
            if not (isinstance(current, type) and issubclass(current, BaseModel)):
                return False
            info = current.model_fields.get(name)
            if info is None:
                return False
            current = info.annotation
        else:
            if typing.get_origin(current) is not list:
                return False
            current = typing.get_args(current)[0]
    return True


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` from a field annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


# --- trial runs -----------------------------------------------------------------------------


def _trial_runs(rule_set: RuleSet) -> tuple[list[str], list[str]]:
    """Run every rule on the contract's example application, complete and stripped down.

    An error on the complete example is a bug in the rule (problem). An error on the sparse
    one, from a rule that names no ``requires``, would fail applications that merely left an
    optional field out, so it is flagged (warning).
    """
    problems: list[str] = []
    warnings: list[str] = []
    full = _example_content()
    sparse = _sparse_content()
    # As if submitted on the first day the rule set is in force.
    submitted_at = rule_set.effective_from
    for label, content, report in (
        ("the complete example application", full, problems),
        ("an application without optional fields", sparse, warnings),
    ):
        context = rule_set._context(content, submitted_at)
        for rule in rule_set.rules:
            outcome = _evaluate_rule(rule, content, context)
            if outcome.error is None:
                continue
            if report is warnings and rule.requires:
                continue  # handled as needs_information, as designed
            report.append(f"rule {rule.id!r} errors on {label}: {outcome.error}")
    return problems, warnings


def _example_content() -> ApplicationContent:
    return ApplicationContent.model_validate(CONTENT_EXAMPLE)


def _sparse_content() -> ApplicationContent:
    example = _example_content()
    return example.model_copy(
        update={
            "firm": example.firm.model_copy(update={"parent_companies": []}),
            "incentives": example.incentives.model_copy(
                update={"grant": None, "zone_space": [], "fast_track": []}
            ),
            "commitments": example.commitments.model_copy(
                update={
                    "training": None,
                    "university_partnerships": [],
                    "exchange_programs": [],
                    "data_protection_attestation": None,
                    "responsible_ai_attestation": None,
                }
            ),
            "documents": [],
        }
    )
