"""``incentives audit``: check the transparency log from the outside.

- ``checkpoint [--save FILE]``: print the latest signed checkpoint, or keep it for later;
- ``verify [--against FILE] [--key KEY]``: recompute the tree from the served leaves, check the
  checkpoint's signature and root, and name the first modified, deleted, inserted or reordered
  leaf; with ``--against`` also check that the log is consistent with a saved checkpoint;
- ``export APP | --all [--format bundle|jsonl|csv] [--output FILE]``: a single-file bundle of
  entries, inclusion proofs, checkpoint and verifier key, with the applications' Temporal
  workflow histories;
- ``verify-bundle FILE [--key KEY]``: check such a bundle offline;
- ``workflows [APP ...] [--from FILE]``: replay the stored workflow histories against the
  current workflow code and report every run that is no longer deterministic;
- ``history APP``: an application's records across every topic, in a table;
- ``state APP [--as-of T]``: the application's state at an instant, rebuilt from the log;
- ``prove APP [--rules PATH] [--review-url URL]``: re-check every decision on the application
  (eligibility re-run under its recorded rule set; review decisions against the assignments,
  the registry as it stood at the decision, conflicts of interest and separation of duties),
  a verdict per decision;
- ``replay [--only NAME]``: rebuild the projections built from events (review inbox, zone
  occupancy, application status and timeline, budget balances) from the log into scratch
  databases with the services' own consumers, and diff them with the live ones;
- ``new-key [--name ORIGIN]``: a new checkpoint signing key (for
  ``INCENTIVES_AUDIT_SIGNING_KEY``); its verifier key goes to standard error.

Everything goes through the audit API (``--url``, default ``http://127.0.0.1:<audit port>``) with
a bearer token (``--token`` or ``INCENTIVES_TOKEN``; by default a short-lived auditor token
signed with the configured key, as ``incentives token --role auditor`` would print).
Exit codes: 0 verified, 1 verification failed, 2 unusable input or unreachable log.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from services.cli.console import make_app, make_console

if TYPE_CHECKING:
    import httpx

    from services.audit.domain.checkpoint import Verifier

app = make_app(help="Check the audit transparency log: checkpoints, proofs, bundles.")

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def _console() -> Console:
    return make_console()


def _err_console() -> Console:
    return make_console(stderr=True)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    _err_console().print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)


class _Rate(ProgressColumn):
    """Leaves per second."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not task.completed or not elapsed:
            return Text("")
        return Text(f"{task.completed / elapsed:,.0f} leaves/s", style="progress.data.speed")


@contextmanager
def _progress(label: str) -> Iterator[Any]:
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_err_console(), transient=False) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


class _Options:
    def __init__(self, url: str | None, token: str | None) -> None:
        self.url = url
        self.token = token


def _base_url(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    from services.cli.settings import PlatformSettings

    return f"http://127.0.0.1:{PlatformSettings().audit_port}"


def _token(token: str | None) -> str:
    if token:
        return token
    from services.kit.auth import Principal, Role, TokenService
    from services.kit.settings import CommonSettings

    settings = CommonSettings()
    principal = Principal(sub="system:audit-cli", role=Role.AUDITOR, name="incentives audit")
    return TokenService(settings.jwt_secret).issue(principal, ttl=timedelta(minutes=30))


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Audit API base URL. Default http://127.0.0.1:<audit port>."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="INCENTIVES_TOKEN",
            help="Bearer token (auditor or admin). Default: one signed with the configured key.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Options shared by the audit commands."""
    ctx.obj = _Options(url, token)


@contextmanager
def _client(ctx: typer.Context) -> Iterator[httpx.Client]:
    import httpx

    options: _Options = ctx.obj
    headers = {"Authorization": f"Bearer {_token(options.token)}"}
    with httpx.Client(base_url=_base_url(options.url), headers=headers, timeout=30) as client:
        yield client


def _get(client: httpx.Client, path: str, **params: Any) -> httpx.Response:
    import httpx

    try:
        response = client.get(path, params=params or None)
    except httpx.HTTPError as exc:
        _fail(f"the audit API at {client.base_url} is unreachable: {exc}")
    if response.status_code != 200:
        detail = response.text
        with suppress(ValueError):
            detail = response.json().get("detail", detail)
        _fail(f"GET {path} answered {response.status_code}: {detail}")
    return response


class HttpLogSource:
    """A :class:`~services.audit.domain.verification.LogSource` over the audit API."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def checkpoint(self) -> str:
        return _get(self.client, "/v1/log/checkpoint").text

    def verifier_key(self) -> str:
        return _get(self.client, "/v1/log/key").text

    def entry_pages(self, start: int, end: int) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = _get(
            self.client, "/v1/log/entries", start=start, end=end
        ).json()["entries"]
        return entries

    def entries(self, start: int, end: int) -> Sequence[tuple[int, bytes]]:
        return [
            (int(e["index"]), base64.b64decode(e["leaf"])) for e in self.entry_pages(start, end)
        ]

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        body = _get(self.client, "/v1/log/proof/inclusion", index=index, tree_size=tree_size)
        return [base64.b64decode(p) for p in body.json()["proof"]]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        body = _get(self.client, "/v1/log/proof/consistency", first=first, second=second)
        return [base64.b64decode(p) for p in body.json()["proof"]]


def _pinned_key(key: str | None) -> Verifier | None:
    if key is None:
        return None
    from services.audit.domain.checkpoint import CheckpointError, Verifier

    text = Path(key).read_text() if Path(key).is_file() else key
    try:
        return Verifier.from_key(text)
    except CheckpointError as exc:
        _fail(f"--key: {exc}")


KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="The log's verifier key (text or a file) obtained independently. Default: the "
        "key the log serves.",
        show_default=False,
    ),
]


@app.command()
def checkpoint(
    ctx: typer.Context,
    save: Annotated[
        Path | None, typer.Option("--save", help="Write the checkpoint to this file.")
    ] = None,
) -> None:
    """Print the latest signed checkpoint, or save it for a later `verify --against`."""
    from services.audit.domain.checkpoint import CheckpointError, Verifier

    with _client(ctx) as client:
        source = HttpLogSource(client)
        note = source.checkpoint()
        try:
            head = Verifier.from_key(source.verifier_key()).open_checkpoint(note)
        except CheckpointError as exc:
            _fail(f"the served checkpoint does not verify: {exc}", EXIT_FAILED)
    if save is None:
        typer.echo(note, nl=False)
        return
    save.write_text(note)
    _console().print(f"saved the checkpoint of {head.size} leaves to {escape(str(save))}")


@app.command()
def verify(
    ctx: typer.Context,
    against: Annotated[
        Path | None,
        typer.Option("--against", help="A checkpoint saved earlier: check consistency with it."),
    ] = None,
    key: KeyOption = None,
) -> None:
    """Recompute the tree from the stored leaves and check it against the signed checkpoint."""
    from services.audit.domain.verification import verify_log

    saved = None
    if against is not None:
        try:
            saved = against.read_text()
        except OSError as exc:
            _fail(f"--against: {exc}")
    verifier = _pinned_key(key)
    with _client(ctx) as client, _progress("verifying") as progress:
        report = verify_log(
            HttpLogSource(client), verifier=verifier, against=saved, progress=progress
        )
    console = _console()
    if report.ok and report.checkpoint is not None:
        console.print(
            f"[green]OK[/] {report.leaves} leaves hash to the signed root of tree size "
            f"{report.checkpoint.size}"
            + (
                f"; consistent with the saved checkpoint of {report.against.size} leaves"
                if report.against is not None
                else ""
            )
        )
        return
    for finding in report.findings:
        where = "" if finding.index is None else f" (leaf {finding.index})"
        console.print(f"[red]FAIL[/] {finding.kind}{where}: {escape(finding.detail)}")
    raise typer.Exit(EXIT_FAILED)


def _whole_log_entries(source: HttpLogSource, size: int, progress: Any) -> list[dict[str, Any]]:
    from services.audit.domain.merkle import Frontier, NodeId, inclusion_plan, leaf_hash

    entries: list[dict[str, Any]] = []
    while len(entries) < size:
        page = source.entry_pages(len(entries), min(size, len(entries) + 1000))
        if not page:
            _fail(f"the log served {len(entries)} of the checkpoint's {size} leaves", EXIT_FAILED)
        entries.extend(page)
        progress(len(entries), size)
    # Every leaf is here, so the proofs are computed locally instead of asked for one by one.
    frontier = Frontier()
    nodes: dict[NodeId, bytes] = {}
    for entry in entries:
        nodes.update(frontier.append(leaf_hash(base64.b64decode(entry["leaf"]))))
    for entry in entries:
        plan = inclusion_plan(int(entry["index"]), size)
        entry["inclusion_proof"] = [base64.b64encode(h).decode() for h in plan.assemble(nodes)]
    return entries


TemporalOption = Annotated[
    str | None,
    typer.Option(
        "--temporal",
        help="Temporal frontend, host:port. Default: the platform's (INCENTIVES_TEMPORAL_ADDRESS "
        "or the embedded server's port).",
        show_default=False,
    ),
]
NamespaceOption = Annotated[
    str, typer.Option("--namespace", help="Temporal namespace of the workflows.")
]


def _temporal_target(address: str | None) -> str:
    if address:
        return address
    from services.cli.settings import PlatformSettings

    return PlatformSettings().temporal_target()


def _run_with_temporal(address: str, namespace: str, work: Any) -> Any:
    """Run ``work(client)`` on a fresh Temporal client; exit 2 when Temporal is unreachable."""
    import asyncio
    import gc

    from services.cli.workflow_histories import connect

    async def main() -> Any:
        try:
            client = await connect(address, namespace)
        except RuntimeError as exc:
            _fail(f"Temporal at {address} is unreachable: {exc}")
        try:
            return await work(client)
        finally:
            del client

    try:
        return asyncio.run(main())
    finally:
        # Drop the Temporal core while the interpreter is whole (temporalio sdk-python #300).
        gc.collect()


def _application_keys(entries: Sequence[dict[str, Any]]) -> list[str]:
    from services.audit.domain.leaves import LeafFormatError, parse_leaf

    keys: dict[str, None] = {}
    for entry in entries:
        with suppress(LeafFormatError, ValueError):
            key = parse_leaf(base64.b64decode(entry["leaf"])).key
            if key:
                keys.setdefault(key.decode("utf-8", "replace"))
    return list(keys)


def _workflow_documents(
    address: str, namespace: str, applications: Sequence[str]
) -> list[dict[str, Any]]:
    from services.cli.workflow_histories import fetch_application, history_documents

    async def work(client: Any) -> list[dict[str, Any]]:
        runs = []
        with _progress("workflow histories") as progress:
            for done, application in enumerate(applications, start=1):
                runs.extend(await fetch_application(client, application))
                progress(done, len(applications))
        return history_documents(runs)

    result: list[dict[str, Any]] = _run_with_temporal(address, namespace, work)
    return result


@app.command()
def export(
    ctx: typer.Context,
    application: Annotated[
        str | None, typer.Argument(help="The application id.", show_default=False)
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Export the whole log.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Bundle file. Default: standard output.")
    ] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="bundle (one JSON document), jsonl (the bundle, one JSON object a line) or "
            "csv (a row per record and workflow event, for reading; no proofs).",
        ),
    ] = "bundle",
    temporal: TemporalOption = None,
    namespace: NamespaceOption = "default",
    no_workflow_history: Annotated[
        bool,
        typer.Option(
            "--no-workflow-history",
            help="Leave out the Temporal workflow histories (no Temporal needed).",
        ),
    ] = False,
) -> None:
    """Write a bundle (entries, inclusion proofs, checkpoint, key, and the applications'
    Temporal workflow histories) that verifies offline."""
    from services.audit.domain.bundle import history_bundle, make_bundle
    from services.audit.domain.checkpoint import CheckpointError, Verifier
    from services.cli.export_formats import FORMATS, csv_text, jsonl_lines

    if (application is None) == (not everything):
        _fail("give an application id or --all (not both)")
    if format_ not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, not {format_!r}")
    with _client(ctx) as client:
        source = HttpLogSource(client)
        key = source.verifier_key()
        history: dict[str, Any] = {}
        note, entries = "", []
        if application is not None:
            history = _get(client, f"/v1/applications/{application}/history").json()
        else:
            note = source.checkpoint()
            try:
                size = Verifier.from_key(key).open_checkpoint(note).size
            except CheckpointError as exc:
                _fail(f"the served checkpoint does not verify: {exc}", EXIT_FAILED)
            with _progress("exporting") as progress:
                entries = _whole_log_entries(source, size, progress)
    workflows = None
    if not no_workflow_history:
        applications = [application] if application is not None else _application_keys(entries)
        workflows = _workflow_documents(_temporal_target(temporal), namespace, applications)
    if application is not None:
        bundle = history_bundle(history, key, workflows=workflows)
    else:
        bundle = make_bundle(
            application_id=None,
            verifier_key=key,
            checkpoint=note,
            entries=entries,
            workflows=workflows,
        )
    if format_ == "jsonl":
        text = "".join(f"{line}\n" for line in jsonl_lines(bundle))
    elif format_ == "csv":
        text = csv_text(bundle)
    else:
        text = json.dumps(bundle, indent=1) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        runs = "" if workflows is None else f" and {len(workflows)} workflow run(s)"
        count = len(bundle["entries"])
        _err_console().print(f"wrote {count} entries{runs} to {escape(str(output))}")


def _read_bundle(bundle_file: Path) -> dict[str, Any]:
    """A bundle file, JSON or JSON Lines."""
    from services.audit.domain.bundle import BundleError
    from services.cli.export_formats import bundle_from_jsonl, workflows_from_jsonl

    try:
        text = bundle_file.read_text()
    except OSError as exc:
        _fail(f"{bundle_file}: {exc}")
    try:
        document: dict[str, Any] = json.loads(text)
        return document
    except ValueError:
        pass
    try:
        bundle = bundle_from_jsonl(text)
    except BundleError as exc:
        _fail(f"{bundle_file} is neither a JSON bundle nor JSON Lines: {exc}")
    bundle["workflows"] = workflows_from_jsonl(text)
    return bundle


@app.command("verify-bundle")
def verify_bundle_command(
    bundle_file: Annotated[
        Path, typer.Argument(help="A bundle written by `audit export` (bundle or jsonl).")
    ],
    key: KeyOption = None,
) -> None:
    """Check a bundle offline: signature, every inclusion proof (and the root, for --all)."""
    from services.audit.domain.bundle import BundleError, verify_bundle

    bundle = _read_bundle(bundle_file)
    verifier = _pinned_key(key)
    try:
        with _progress("checking") as progress:
            count, size = verify_bundle(bundle, verifier=verifier, progress=progress)
    except BundleError as exc:
        _console().print(f"[red]FAIL[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_FAILED) from None
    which = "the key the bundle carries" if verifier is None else "the given key"
    _console().print(
        f"[green]OK[/] {count} entries are in the log of {size} leaves signed by {which}"
    )
    runs = bundle.get("workflows")
    if runs:
        _console().print(
            f"{len(runs)} workflow run(s) carried beside them (not leaves of the log: replay "
            "them with `incentives audit workflows --from`)"
        )


def _checked_history(
    client: httpx.Client, application: str
) -> tuple[dict[str, Any], int, dict[int, bool]]:
    """The application's history, its tree size, and per leaf index whether its proof holds.

    The checkpoint the proofs are against must verify with the served key.
    """
    from services.audit.domain.bundle import inclusion_of
    from services.audit.domain.checkpoint import CheckpointError, Verifier

    source = HttpLogSource(client)
    body: dict[str, Any] = _get(client, f"/v1/applications/{application}/history").json()
    try:
        head = Verifier.from_key(source.verifier_key()).open_checkpoint(body["checkpoint"])
    except CheckpointError as exc:
        _fail(f"the served checkpoint does not verify: {exc}", EXIT_FAILED)
    return body, head.size, inclusion_of(body["records"], head)


@app.command()
def history(
    ctx: typer.Context,
    application: Annotated[str, typer.Argument(help="The application id.")],
) -> None:
    """An application's records across every topic, in log order, each with its proof."""
    with _client(ctx) as client:
        body, size, included = _checked_history(client, application)
    table = Table(title=f"{application}: {len(body['records'])} records, tree size {size}")
    for column in ("leaf", "logged at", "topic", "type", "actor", "reason / rules", "proof"):
        table.add_column(column)
    failed = False
    for record in body["records"]:
        envelope = record["envelope"]
        actor = envelope.get("actor") or {}
        detail = envelope.get("reason") or envelope.get("dead_letter_reason") or ""
        if envelope.get("rule_set_version"):
            detail = f"rules {envelope['rule_set_version']} {detail}".strip()
        if included[record["index"]]:
            proof = "[green]ok[/]"
        else:
            proof, failed = "[red]FAIL[/]", True
        table.add_row(
            str(record["index"]),
            record["logged_at"],
            record["topic"],
            escape(envelope.get("type") or "(undecodable)"),
            escape(f"{actor.get('kind', '')} {actor.get('id', '')}".strip()),
            escape(detail),
            proof,
        )
    _console().print(table)
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def state(
    ctx: typer.Context,
    application: Annotated[str, typer.Argument(help="The application id.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The instant, RFC 3339 with a UTC offset (e.g. 2026-12-01T10:00:00Z). "
            "Default: now.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The application's state at an instant, rebuilt from the log: status, decisions, offer."""
    with _client(ctx) as client:
        params = {} if as_of is None else {"as_of": as_of}
        body = _get(client, f"/v1/applications/{application}/state", **params).json()
    console = _console()
    summary = Table(
        title=f"{application} as of {body['as_of']} (log of {body['tree_size']} leaves)",
        show_header=False,
    )
    summary.add_column("", style="bold")
    summary.add_column("")
    offer, award = body.get("offer"), body.get("award")
    rows = [
        ("status", body["status"]),
        ("since", body["status_changed_at"]),
        ("revision", str(body["revision"])),
        ("reasons", "; ".join(body["reasons"])),
        ("firm", body.get("firm_id") or ""),
        ("events", f"{body['records']} ({body['undecodable']} undecodable ignored)"),
    ]
    if offer:
        answer = f"{offer['answer']} at {offer['answered_at']}" if offer.get("answer") else "open"
        rows.append(
            (
                "offer",
                f"{offer['offer_id']}: grant {offer.get('grant') or '-'}, "
                f"expires {offer['expires_at']}, {answer}",
            )
        )
    if award:
        done = "completed" if award["completed"] else "cancelled" if award["cancelled"] else "open"
        paid = ", ".join(str(n) for n in award["paid"]) or "none"
        rows.append(
            (
                "award",
                f"{award['award_id']}: {award['total']} in {award['tranches']} "
                f"tranche(s), paid: {paid}, {done}",
            )
        )
    for name, value in rows:
        summary.add_row(name, escape(value))
    console.print(summary)
    decisions = Table(title="decisions")
    for column in ("leaf", "at", "stage", "outcome", "by", "rules / comment"):
        decisions.add_column(column)
    for decision in body["decisions"]:
        actor = decision["actor"]
        who = decision.get("reviewer_id") or f"{actor['kind']} {actor['id']}"
        detail = decision.get("rule_set_version") or decision.get("comment") or ""
        decisions.add_row(
            str(decision["index"]),
            decision["occurred_at"],
            decision["stage"],
            decision["outcome"],
            escape(who),
            escape(detail),
        )
    console.print(decisions)
    if body["assignments"]:
        assigned = Table(title="review assignments")
        for column in ("leaf", "at", "stage", "reviewer", "task"):
            assigned.add_column(column)
        for item in body["assignments"]:
            assigned.add_row(
                str(item["index"]),
                item["occurred_at"],
                item["stage"],
                escape(item["reviewer_id"]),
                escape(item["task_id"]),
            )
        console.print(assigned)


def _registry_histories(
    ctx: typer.Context, review_url: str | None, reviewers: set[str]
) -> dict[str, Any]:
    """Each reviewer's registry history from the review desk, ``None`` if absent, or why not."""
    import httpx

    from contracts.v1.desk import ReviewerProfile
    from services.cli.prove import RegistryVersion

    if review_url is None:
        from services.cli.settings import PlatformSettings

        review_url = f"http://127.0.0.1:{PlatformSettings().review_port}"
    options: _Options = ctx.obj
    headers = {"Authorization": f"Bearer {_token(options.token)}"}
    histories: dict[str, Any] = {}
    with httpx.Client(base_url=review_url.rstrip("/"), headers=headers, timeout=30) as client:
        for who in sorted(reviewers):
            try:
                response = client.get(f"/v1/registry/reviewers/{who}/history")
            except httpx.HTTPError as exc:
                histories[who] = f"the review desk at {review_url} is unreachable: {exc}"
                continue
            if response.status_code == 404:
                histories[who] = None
            elif response.status_code != 200:
                histories[who] = f"GET {response.url.path} answered {response.status_code}"
            else:
                histories[who] = [
                    RegistryVersion(
                        changed_at=datetime.fromisoformat(item["changed_at"]),
                        profile=None
                        if item["profile"] is None
                        else ReviewerProfile.model_validate(item["profile"]),
                        change=item["change"],
                    )
                    for item in response.json()["items"]
                ]
    return histories


@app.command()
def prove(
    ctx: typer.Context,
    application: Annotated[str, typer.Argument(help="The application id.")],
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help="Rule-set files (a folder or one file). Default: the rule sets shipped with "
            "the eligibility service.",
            show_default=False,
        ),
    ] = None,
    review_url: Annotated[
        str | None,
        typer.Option(
            "--review-url",
            help="Review desk base URL, for the reviewer registry. "
            "Default http://127.0.0.1:<review port>.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Re-check every decision on the application from the log, with a verdict per decision.

    Exit 0 when every decision is proven, 1 when one failed or could not be proven.
    """
    from contracts.v1.review import ReviewDecisionRecorded
    from services.audit.domain.state import logged_events
    from services.cli.prove import RuleFile, Verdict, prove_eligibility, prove_reviews
    from services.eligibility.domain import RuleSetError
    from services.eligibility.rulefiles import SHIPPED_RULES_DIR, rule_files

    try:
        files = [RuleFile(p.name, p.read_bytes()) for p in rule_files(rules or SHIPPED_RULES_DIR)]
    except (RuleSetError, OSError) as exc:
        _fail(f"--rules: {exc}")
    with _client(ctx) as client:
        body, size, included = _checked_history(client, application)
    broken = sorted(i for i, ok in included.items() if not ok)
    if broken:
        _console().print(
            f"[red]FAIL[/] the inclusion proofs of leaves {', '.join(map(str, broken))} do not "
            "hold: nothing is proven from an unproven log"
        )
        raise typer.Exit(EXIT_FAILED)
    leaves = [(r["index"], base64.b64decode(r["leaf"])) for r in body["records"]]
    events, _undecodable = logged_events(leaves)
    reviewers = {
        e.envelope.payload.reviewer_id
        for e in events
        if isinstance(e.envelope.payload, ReviewDecisionRecorded)
    }
    registry = _registry_histories(ctx, review_url, reviewers) if reviewers else {}
    proofs = sorted(
        [*prove_eligibility(events, files), *prove_reviews(events, registry)],
        key=lambda p: p.index,
    )
    if not proofs:
        _fail(f"the log (tree size {size}) holds no decision on {application}")
    console = _console()
    table = Table(title=f"{application}: {len(proofs)} decisions, log of {size} leaves")
    for column in ("leaf", "at", "decision", "verdict", "checked"):
        table.add_column(column)
    styles = {Verdict.PROVEN: "green", Verdict.FAILED: "red", Verdict.UNPROVEN: "yellow"}
    for proof in proofs:
        verdict = proof.verdict
        table.add_row(
            str(proof.index),
            proof.at.isoformat(),
            escape(f"{proof.kind} {proof.subject}"),
            f"[{styles[verdict]}]{verdict.value.upper()}[/]",
            escape("; ".join(proof.checked)),
        )
    console.print(table)
    # Why a decision is not proven, one line each (never wrapped, for scripts to read).
    for proof in proofs:
        for problem in proof.problems:
            console.print(f"[red]leaf {proof.index}[/] {proof.kind}: {escape(problem)}")
        for gap in proof.unproven:
            console.print(f"[yellow]leaf {proof.index}[/] {proof.kind}: {escape(gap)}")
    if any(p.verdict is not Verdict.PROVEN for p in proofs):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def workflows(
    applications: Annotated[
        list[str] | None,
        typer.Argument(
            help="Application ids (workflow ids). Default: every IncentiveApproval workflow "
            "Temporal knows.",
            show_default=False,
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Replay the histories in a file instead of Temporal's: an export bundle "
            "(bundle or jsonl), a Temporal history JSON, or a folder of them.",
            show_default=False,
        ),
    ] = None,
    temporal: TemporalOption = None,
    namespace: NamespaceOption = "default",
) -> None:
    """Replay the applications' stored workflow histories against the current workflow code.

    Every run must replay: one that does not is a non-deterministic change, which would break
    the workflows still running (guard it with workflow.patched). Exit 1 when a run does not
    replay, 2 when there is nothing to replay or Temporal cannot be reached.
    """
    import asyncio
    import gc

    from services.cli.workflow_histories import (
        HistoryFileError,
        ReplayOutcome,
        fetch_all,
        fetch_application,
        histories_from_documents,
        histories_from_file,
        iterate,
        replay,
    )

    if from_file is not None and applications:
        _fail("give application ids or --from (not both)")
    outcomes: list[ReplayOutcome] = []
    with _progress("replaying") as progress:
        replayed = 0

        def seen(outcome: ReplayOutcome) -> None:
            nonlocal replayed
            replayed += 1
            progress(replayed, max(total, replayed))

        if from_file is not None:
            try:
                if from_file.suffix == ".jsonl":
                    from services.cli.export_formats import workflows_from_jsonl

                    runs = histories_from_documents(workflows_from_jsonl(from_file.read_text()))
                else:
                    runs = histories_from_file(from_file)
            except (HistoryFileError, OSError) as exc:
                _fail(str(exc))
            total = len(runs)
            try:
                outcomes = asyncio.run(replay(iterate(runs), on_result=seen))
            finally:
                gc.collect()
        else:
            total = 0

            async def work(client: Any) -> list[ReplayOutcome]:
                nonlocal total
                if applications:
                    runs = [r for a in applications for r in await fetch_application(client, a)]
                    total = len(runs)
                    return await replay(iterate(runs), on_result=seen)
                return await replay(fetch_all(client), on_result=seen)

            outcomes = _run_with_temporal(_temporal_target(temporal), namespace, work)
    if not outcomes:
        _fail("no workflow history to replay")
    table = Table(title=f"{len(outcomes)} workflow run(s) replayed against the current code")
    for column in ("workflow", "run", "events", "replay"):
        table.add_column(column)
    for outcome in outcomes:
        table.add_row(
            escape(outcome.workflow_id),
            outcome.run_id,
            str(outcome.events),
            "[green]ok[/]" if outcome.ok else "[red]NON-DETERMINISTIC[/]",
        )
    console = _console()
    console.print(table)
    failed = [o for o in outcomes if not o.ok]
    # One line each, never wrapped, for scripts to read.
    for outcome in failed:
        console.print(
            f"[red]FAIL[/] {escape(outcome.workflow_id)} run {outcome.run_id}: "
            f"{escape(outcome.failure or '')}",
            soft_wrap=True,
        )
    if failed:
        raise typer.Exit(EXIT_FAILED)
    console.print(f"[green]OK[/] every one of the {len(outcomes)} run(s) replays")


def _signed_entries(
    source: HttpLogSource, verifier: Verifier | None, progress: Any
) -> tuple[list[dict[str, Any]], int]:
    """Every entry of the latest signed checkpoint's tree, checked gap-free and against its
    root; and that tree size."""
    from services.audit.domain.checkpoint import CheckpointError, Verifier
    from services.audit.domain.merkle import leaf_hash, root_from_leaf_hashes

    note = source.checkpoint()
    try:
        head = (verifier or Verifier.from_key(source.verifier_key())).open_checkpoint(note)
    except CheckpointError as exc:
        _fail(f"the served checkpoint does not verify: {exc}", EXIT_FAILED)
    entries: list[dict[str, Any]] = []
    while len(entries) < head.size:
        page = source.entry_pages(len(entries), min(head.size, len(entries) + 1000))
        for entry in page:
            if int(entry["index"]) != len(entries):
                _fail(
                    f"the log has a gap: leaf {len(entries)} is missing (got {entry['index']})",
                    EXIT_FAILED,
                )
            entries.append(entry)
        if not page:
            _fail(f"the log served {len(entries)} of the checkpoint's {head.size} leaves")
        progress(len(entries), head.size)
    hashes = [leaf_hash(base64.b64decode(e["leaf"])) for e in entries]
    if root_from_leaf_hashes(hashes) != head.root:
        _fail(
            "the served leaves do not hash to the signed root: run `incentives audit verify`",
            EXIT_FAILED,
        )
    return entries, head.size


def _service_url(name: str, given: str | None) -> str:
    if given:
        return given.rstrip("/")
    from services.cli.settings import PlatformSettings

    port = getattr(PlatformSettings(), f"{name}_port")
    return f"http://127.0.0.1:{port}"


def _url_option(name: str) -> Any:
    return typer.Option(
        f"--{name}-url",
        help=f"The live {name} service's base URL. Default http://127.0.0.1:<{name} port>.",
        show_default=False,
    )


@app.command()
def replay(
    ctx: typer.Context,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Rebuild only these (repeatable): review, zones, applications, disbursement.",
            show_default=False,
        ),
    ] = None,
    applications_url: Annotated[str | None, _url_option("applications")] = None,
    review_url: Annotated[str | None, _url_option("review")] = None,
    zones_url: Annotated[str | None, _url_option("zones")] = None,
    disbursement_url: Annotated[str | None, _url_option("disbursement")] = None,
    scratch: Annotated[
        Path | None,
        typer.Option(
            "--scratch",
            help="Folder for the scratch databases, kept afterwards. Default: a temporary "
            "folder, removed.",
            show_default=False,
        ),
    ] = None,
    key: KeyOption = None,
) -> None:
    """Rebuild the projections from the log into scratch databases and diff the live ones.

    Reads the log up to its gap-free signed head, feeds every record in index order to the
    services' own consumers (review inbox, zone occupancy) on scratch databases, rebuilds
    application status and timeline and the budget balances from the log, and compares each
    with the live service's API. Exit 0 when all match, 1 on a difference, 2 when a live
    service cannot be read.
    """
    import asyncio
    import gc

    from services.cli.replay import SERVICES, LiveServices, records_of
    from services.cli.replay import replay as run_replay
    from services.kit.logging import configure_logging

    chosen = list(only or ())
    unknown = sorted(set(chosen) - set(SERVICES))
    if unknown:
        _fail(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    verifier = _pinned_key(key)
    options: _Options = ctx.obj
    headers = {"Authorization": f"Bearer {_token(options.token)}"}
    with _client(ctx) as client, _progress("reading the log") as progress:
        entries, size = _signed_entries(HttpLogSource(client), verifier, progress)
    records, unparsed = records_of(entries)
    live = LiveServices(
        urls={
            "applications": _service_url("applications", applications_url),
            "review": _service_url("review", review_url),
            "zones": _service_url("zones", zones_url),
            "disbursement": _service_url("disbursement", disbursement_url),
        },
        headers=headers,
        scratch_headers={"Authorization": f"Bearer {_token(None)}"},
    )
    # The scratch services log like services; only their errors belong on the terminal.
    configure_logging("audit-replay", "ERROR")
    console = _console()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
        console=_err_console(),
    ) as bars:

        def bar(label: str) -> Any:
            task = bars.add_task(label, total=None)
            return lambda done, total: bars.update(task, completed=done, total=total)

        try:
            reports = asyncio.run(
                run_replay(records, size, live, scratch_dir=scratch, only=chosen, progress=bar)
            )
        finally:
            gc.collect()
    table = Table(title=f"replayed {size} leaves (the signed head), {unparsed} not records")
    for column in ("projection", "records fed", "items", "left out", "differences"):
        table.add_column(column)
    for report in reports:
        verdict = (
            "[yellow]not compared[/]"
            if report.error
            else "[green]none[/]"
            if not report.differences
            else f"[red]{len(report.differences)}[/]"
        )
        table.add_row(
            report.name,
            str(report.records),
            str(report.items),
            str(len(report.left_out)),
            verdict,
        )
    console.print(table)
    # One line each, never wrapped, for scripts to read.
    for report in reports:
        if report.error:
            console.print(f"[yellow]{report.name}[/]: {escape(report.error)}", soft_wrap=True)
        if report.left_out:
            console.print(
                f"[yellow]{report.name}[/]: leaves left out (refused or waiting): "
                f"{', '.join(map(str, report.left_out))}",
                soft_wrap=True,
            )
        for d in report.differences:
            where = f"{d.item} {d.path}".strip()
            console.print(
                f"[red]DIFF[/] {report.name}: {escape(where)}: live {escape(repr(d.live))}, "
                f"rebuilt {escape(repr(d.rebuilt))}",
                soft_wrap=True,
            )
    if any(r.error for r in reports):
        raise typer.Exit(EXIT_BAD_INPUT)
    if any(r.differences for r in reports):
        raise typer.Exit(EXIT_FAILED)
    console.print("[green]OK[/] every rebuilt projection matches the live one")


@app.command("new-key")
def new_key(
    name: Annotated[
        str, typer.Option("--name", help="The log's origin, which names the key.")
    ] = "incentives.example/audit",
) -> None:
    """Print a new Ed25519 checkpoint signing key; the verifier key to publish goes to stderr."""
    from services.audit.domain.checkpoint import CheckpointError, Signer

    try:
        signer = Signer.generate(name)
    except CheckpointError as exc:
        _fail(f"--name: {exc}")
    typer.echo(signer.key_text())
    _err_console().print(f"verifier key: {signer.verifier.key_text()}", soft_wrap=True)
