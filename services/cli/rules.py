"""``incentives rules``: validate rule-set files and explain a decision rule by rule.

- ``incentives rules check FILE...``: each file (or folder of ``*.toml`` files) is parsed,
  validated and compiled exactly as the eligibility service does at start. Exit 0 with a
  summary when all are valid, 1 with every problem otherwise.
- ``incentives rules explain APPLICATION.json``: evaluates an application (its content, an
  ``application.submitted``/``amended`` payload, or a whole envelope) and prints each rule's
  outcome, the decision, and the rule set's version and hash.

Registered in the main app with ``app.add_typer(rules.app, name="rules")``. The eligibility
domain (and the CEL engine) is imported inside the commands, so ``incentives --help`` stays fast.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.console import make_app, make_console

if TYPE_CHECKING:
    from contracts.v1.applications import ApplicationContent
    from services.eligibility.domain import Decision, RuleSet

app = make_app(help="Check eligibility rule-set files and explain decisions.", no_args_is_help=True)

#: Exit codes: invalid rules (or none in force) vs. an unusable application file or option.
EXIT_INVALID_RULES = 1
EXIT_BAD_INPUT = 2

_STATUS_STYLE = {
    "passed": ("[green]PASS[/]", "green"),
    "failed": ("[red]FAIL[/]", "red"),
    "needs_information": ("[yellow]NEEDS INFO[/]", "yellow"),
}


def _console() -> Console:
    return make_console()


def _err_console() -> Console:
    return make_console(stderr=True)


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------


@app.command()
def check(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Rule-set files, or folders of *.toml rule-set files (checked as one catalog).",
            show_default=False,
        ),
    ],
) -> None:
    """Validate rule-set files: TOML shape, CEL compiles, unique ids, explanations, dates."""
    from services.eligibility.domain import RuleSetError, build_catalog
    from services.eligibility.rulefiles import read_rule_set, rule_files

    console, err = _console(), _err_console()
    valid: list[RuleSet] = []
    failed = 0
    for path in paths:
        try:
            files = rule_files(path)
        except RuleSetError as exc:
            _print_problems(err, exc.source, exc.problems)
            failed += 1
            continue
        for file in files:
            try:
                rule_set = read_rule_set(file)
            except RuleSetError as exc:
                _print_problems(err, str(file), exc.problems)
                failed += 1
                continue
            valid.append(rule_set)
            _print_summary(console, file, rule_set)

    if len(valid) > 1:
        # Several versions together must also make a usable catalog: no version defined twice,
        # no two versions taking effect on the same day.
        try:
            build_catalog(valid)
        except RuleSetError as exc:
            _print_problems(err, "the rule sets together", exc.problems)
            failed += 1
    if failed:
        err.print(f"[red]{failed} problem source(s); see above.")
        raise typer.Exit(EXIT_INVALID_RULES)
    console.print(f"[green]OK[/]: {len(valid)} rule set(s) valid.")


def _print_problems(err: Console, source: str, problems: tuple[str, ...]) -> None:
    err.print(f"[red]✗ {escape(source)}[/]: invalid rule set")
    for problem in problems:
        err.print(f"  - {escape(problem)}", soft_wrap=True)


def _print_summary(console: Console, file: Path, rule_set: RuleSet) -> None:
    console.print(
        f"[green]✓ {escape(str(file))}[/]: {escape(rule_set.label)}, effective from "
        f"{rule_set.effective_from}, {len(rule_set.rules)} rules",
        soft_wrap=True,
    )
    console.print(f"  sha256 {rule_set.sha256}", soft_wrap=True)
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("rule", no_wrap=True)
    table.add_column("requires", overflow="fold")
    table.add_column("if false", no_wrap=True)
    for rule in rule_set.rules:
        table.add_row(rule.id, ", ".join(rule.requires) or "-", rule.failure.value)
    console.print(table)
    for warning in rule_set.warnings:
        console.print(f"  [yellow]warning[/]: {escape(warning)}", soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------------


@app.command()
def explain(
    application: Annotated[
        Path,
        typer.Argument(
            help=(
                "JSON file: the application content, an application.submitted/amended payload"
                " or a whole envelope."
            ),
            show_default=False,
        ),
    ],
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="DATE",
            help=(
                "Choose the rule set in force on this date (YYYY-MM-DD). Default: the "
                "submission time in the file, else today (UTC)."
            ),
        ),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            metavar="PATH",
            help=(
                "A rule-set file to use as is, or a folder to choose from by date. Default: "
                "the rule sets shipped with the eligibility service."
            ),
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the decision as JSON instead of a table.")
    ] = False,
) -> None:
    """Evaluate an application and show the outcome rule by rule."""
    from services.eligibility.domain import NoRuleSetInForce, RuleSetError
    from services.eligibility.rulefiles import SHIPPED_RULES_DIR, load_catalog, read_rule_set

    console, err = _console(), _err_console()
    on_date: date | None = None
    if at is not None:
        try:
            on_date = date.fromisoformat(at)
        except ValueError:
            err.print(f"[red]--at {escape(at)!r} is not a date (YYYY-MM-DD).")
            raise typer.Exit(EXIT_BAD_INPUT) from None

    try:
        content, submitted_at = _read_application(application)
    except _BadApplication as exc:
        err.print(f"[red]{escape(str(application))}[/]: {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None

    chosen_by: str
    if on_date is not None:
        when, chosen_by = on_date, "--at"
    elif submitted_at is not None:
        when, chosen_by = submitted_at.astimezone(UTC).date(), "the submission time"
    else:
        when, chosen_by = datetime.now(UTC).date(), "today"

    source = rules or SHIPPED_RULES_DIR
    try:
        if source.is_file():
            rule_set = read_rule_set(source)
            chosen_by = "--rules"
        else:
            rule_set = load_catalog(source).in_force(when)
    except RuleSetError as exc:
        _print_problems(err, exc.source, exc.problems)
        raise typer.Exit(EXIT_INVALID_RULES) from None
    except NoRuleSetInForce as exc:
        err.print(f"[red]{escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID_RULES) from None

    # The attestation window and any other time-relative rule count from the same moment that
    # chose the rule set: --at, else the file's submission time, else now.
    judged_at = on_date or submitted_at or datetime.now(UTC)
    decision = rule_set.evaluate(content, judged_at)
    if as_json:
        typer.echo(json.dumps(_decision_json(decision, rule_set), indent=2))
        return
    _print_decision(console, decision, rule_set, when=when, chosen_by=chosen_by)


class _BadApplication(ValueError):
    """The application file cannot be read or does not validate."""


def _read_application(path: Path) -> tuple[ApplicationContent, datetime | None]:
    """The content in ``path`` and, when the file says, the first submission time."""
    from pydantic import ValidationError

    from contracts import catalog
    from contracts.errors import ContractError
    from contracts.v1.applications import (
        ApplicationAmended,
        ApplicationContent,
        ApplicationSubmitted,
    )

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _BadApplication(f"cannot read the file: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise _BadApplication(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _BadApplication("expected a JSON object")

    try:
        if "payload" in data and "type" in data:
            envelope = catalog.decode(raw)
            payload = envelope.payload
            if not isinstance(payload, ApplicationSubmitted | ApplicationAmended):
                raise _BadApplication(
                    f"an envelope of type {envelope.type!r}; expected application.submitted "
                    "or application.amended"
                )
            return payload.content, payload.submitted_at
        if "content" in data:
            model: type[ApplicationSubmitted] | type[ApplicationAmended] = (
                ApplicationAmended if "amended_at" in data else ApplicationSubmitted
            )
            event = model.model_validate_json(raw)
            return event.content, event.submitted_at
        return ApplicationContent.model_validate_json(raw), None
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        ]
        raise _BadApplication("not a valid application:\n  " + "\n  ".join(lines)) from exc
    except ContractError as exc:
        raise _BadApplication(str(exc)) from exc


def _print_decision(
    console: Console, decision: Decision, rule_set: RuleSet, *, when: date, chosen_by: str
) -> None:
    table = Table(title="Eligibility, rule by rule", show_lines=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("explanation", overflow="fold")
    for result in decision.results:
        label, _style = _STATUS_STYLE[result.status.value]
        text = escape(result.explanation)
        if result.missing_fields:
            text += f"\n[dim]missing: {escape(', '.join(result.missing_fields))}[/]"
        if result.error:
            text += f"\n[dim]evaluation error: {escape(result.error)}[/]"
        table.add_row(result.rule_id, label, text)
    console.print(table)

    outcome = decision.outcome.value
    style = {"eligible": "green", "ineligible": "red"}.get(outcome, "yellow")
    console.print(f"Outcome: [bold {style}]{outcome}[/]")
    if decision.missing_fields:
        console.print(f"Missing fields: {escape(', '.join(decision.missing_fields))}")
    origin = (
        f"file {rule_set.source}"
        if chosen_by == "--rules"
        else f"in force on {when}, by {chosen_by}; file {rule_set.source}"
    )
    console.print(
        f"Rule set: {escape(rule_set.label)}, effective from {rule_set.effective_from} "
        f"({escape(origin)})",
        soft_wrap=True,
    )
    console.print(f"Rule-set sha256: {rule_set.sha256}", soft_wrap=True)


def _decision_json(decision: Decision, rule_set: RuleSet) -> dict[str, Any]:
    return {
        "outcome": decision.outcome.value,
        "rule_set_id": decision.rule_set_id,
        "rule_set_version": decision.rule_set_version,
        "rule_set_sha256": decision.rule_set_sha256,
        "rule_set_effective_from": decision.rule_set_effective_from.isoformat(),
        "rule_set_file": rule_set.source,
        "rule_results": [result.as_dict() for result in decision.results],
        "missing_fields": list(decision.missing_fields),
    }
