"""``incentives dlq``: list, show and redrive dead letters (the work is in ``deadletters``).

Ids are ``<dlq topic>:<partition>:<offset>``; see :mod:`services.cli.deadletters`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table

from services.cli.console import make_console

#: Environment variable naming the operator when ``--operator`` is not given.
OPERATOR_ENV = "INCENTIVES_OPERATOR"

app = typer.Typer(
    help="Inspect and redrive dead letters. Ids are <dlq topic>:<partition>:<offset>.",
    no_args_is_help=True,
)

BootstrapOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        help="Kafka bootstrap servers (env INCENTIVES_KAFKA_BOOTSTRAP; default the embedded "
        "broker's 127.0.0.1:INCENTIVES_BROKER_PORT).",
    ),
]
TopicOption = Annotated[
    str | None,
    typer.Option("--topic", help="A registry topic (or its .dlq twin); default every topic."),
]


def _bootstrap(bootstrap: str | None) -> str:
    from services.cli.main import load_settings

    return load_settings(kafka_bootstrap=bootstrap).bootstrap()


def _fail(message: str) -> typer.Exit:
    make_console(stderr=True).print(f"[red]{message}")
    return typer.Exit(1)


@app.command("list")
def list_command(topic: TopicOption = None, bootstrap: BootstrapOption = None) -> None:
    """List the dead letters the broker holds, with why each was given up on."""
    from services.cli.deadletters import (
        DeadLetterError,
        dlq_topics,
        list_dead_letters,
        redriven_ids,
    )

    target = _bootstrap(bootstrap)
    try:
        letters = asyncio.run(list_dead_letters(target, dlq_topics(topic)))
        redriven = asyncio.run(redriven_ids(target))
    except (KeyError, TimeoutError, DeadLetterError) as exc:
        raise _fail(str(exc)) from exc
    table = Table(title=f"Dead letters on {target}")
    # The id is what the other commands take: never wrapped or cut.
    table.add_column("id", no_wrap=True)
    for column in ("type", "event id", "reason", "consumer", "failed at", "redriven"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            str(letter.id),
            letter.message_type or "",
            str(letter.event_id or ""),
            letter.info.reason,
            letter.info.consumer,
            letter.failed_at,
            str(redriven.get(str(letter.id), 0)),
        )
    console = make_console()
    console.print(table)
    console.print(f"{len(letters)} dead letter(s).")


@app.command("show")
def show_command(
    dead_letter_id: Annotated[str, typer.Argument(metavar="ID", help="<dlq topic>:<p>:<offset>")],
    bootstrap: BootstrapOption = None,
) -> None:
    """Show one dead letter: its dead-letter headers, original headers, key and bytes."""
    from services.cli.deadletters import DeadLetterError, DeadLetterId, get_dead_letters

    target = _bootstrap(bootstrap)
    try:
        (letter,) = asyncio.run(get_dead_letters(target, [DeadLetterId.parse(dead_letter_id)]))
    except (TimeoutError, DeadLetterError) as exc:
        raise _fail(str(exc)) from exc
    info = letter.info
    shown = {
        "id": str(letter.id),
        "source": f"{info.source_topic}:{info.source_partition}:{info.source_offset}",
        "reason": info.reason,
        "error": info.error,
        "error_type": info.error_type,
        "consumer": info.consumer,
        "attempts": info.attempts,
        "failed_at": letter.failed_at,
        "key": letter.key.decode(errors="replace") if letter.key is not None else None,
        "headers": {k: v.decode(errors="replace") for k, v in info.original_headers},
        "value": letter.value.decode(errors="replace"),
    }
    typer.echo(json.dumps(shown, indent=2, ensure_ascii=False))


@app.command("redrive")
def redrive_command(
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="[ID]...", help="Dead letters to redrive.")
    ] = None,
    topic: Annotated[
        str | None,
        typer.Option(
            "--topic", help="Redrive every dead letter of this topic not redriven before."
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why: recorded with the redrive.")
    ] = None,
    operator: Annotated[
        str | None,
        typer.Option("--operator", help=f"Who redrives (env {OPERATOR_ENV}; default the OS user)."),
    ] = None,
    bootstrap: BootstrapOption = None,
) -> None:
    """Publish dead letters back to their topic, with their original event id; record it."""
    from services.cli.deadletters import (
        DeadLetterError,
        DeadLetterId,
        default_operator,
        dlq_topics,
        get_dead_letters,
        list_dead_letters,
        redrive,
        redriven_ids,
    )

    if bool(ids) == (topic is not None):
        raise _fail("Give dead-letter ids or --topic, not both and not neither.")
    target = _bootstrap(bootstrap)
    who = (operator or default_operator()).strip()
    if not who:
        raise _fail("The operator must not be empty.")
    try:
        if ids:
            letters = asyncio.run(get_dead_letters(target, [DeadLetterId.parse(i) for i in ids]))
        else:
            done = asyncio.run(redriven_ids(target))
            letters = [
                letter
                for letter in asyncio.run(list_dead_letters(target, dlq_topics(topic)))
                if str(letter.id) not in done
            ]
        events = asyncio.run(redrive(target, letters, operator=who, note=reason))
    except (KeyError, TimeoutError, DeadLetterError) as exc:
        raise _fail(str(exc)) from exc
    console = make_console()
    for letter in letters:
        console.print(f"redriven {letter.id} -> {letter.info.source_topic}")
    console.print(f"[green]{len(events)} dead letter(s) redriven by {who}.")


@app.command("asyncapi")
def asyncapi_command() -> None:
    """Print the AsyncAPI document of what these commands publish."""
    from services.cli.deadletters import asyncapi_document

    typer.echo(json.dumps(asyncapi_document(), indent=2))
