"""Activities: the workflow's only way to touch the outside world.

Each activity is a bound method of a class that receives its dependencies from the worker's
composition root (a publish function, the desk's URL and a token source), so tests register
fakes under the same activity names.

Publishing goes through the worker's outbox (``workflows.worker.outbox_publisher``): Temporal
makes the activity durable (it is retried until it succeeds), the outbox keeps the message
across a broker's loss (the broker is a cache of the outboxes, republished to a new one), and
the envelope's deterministic ``event_id`` lets the outbox and the consumers drop the copies a
retry produces.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence

import httpx
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.v1.desk import ReviewerProfile, ReviewerRole
from services.kit import tracing
from services.kit.messaging import Record

#: Hands records on durably (to the worker's outbox) and returns once they are kept.
PublishFn = Callable[[Sequence[Record]], Awaitable[None]]

#: Returns a bearer token for the worker's own principal (``system:workflows``, role admin).
TokenFn = Callable[[], str]

#: The path of the desk's candidates endpoint (see plan/ISSUE4.md, "Assignment").
CANDIDATES_PATH = "/internal/v1/candidates"

#: Statuses worth retrying: the desk is starting, overloaded or briefly unavailable.
_TRANSIENT_STATUSES = frozenset({408, 425, 429})

_PROFILES = TypeAdapter(list[ReviewerProfile])


class OutgoingMessage(BaseModel):
    """One record to publish, already encoded by the workflow."""

    topic: str = Field(description="Destination topic.")
    key: str = Field(description="Record key: the application id.")
    value: str = Field(description="The encoded envelope (UTF-8 JSON).")
    headers: list[tuple[str, str]] = Field(default_factory=list, description="Record headers.")


#: Told the values of records the broker acknowledged (the worker's metrics).
PublishedFn = Callable[[Sequence[bytes]], None]


class Publisher:
    """Holds the worker's way to publish; its bound method is the activity."""

    def __init__(self, publish: PublishFn, *, on_published: PublishedFn | None = None) -> None:
        self._publish = publish
        self._on_published = on_published

    @activity.defn(name="publish_message")
    async def publish_message(self, message: OutgoingMessage) -> None:
        """Hand one record to the worker's way out (its outbox) and wait until it is taken.

        When tracing is on, the record also carries the trace context of the workflow step
        that scheduled the activity (the same for every retry of it).
        """
        headers = [(k, v.encode()) for k, v in message.headers]
        names = {k for k, _v in message.headers}
        headers.extend(
            (k, v.encode()) for k, v in tracing.stable_parent_headers() if k not in names
        )
        value = message.value.encode()
        await self._publish(
            [
                Record(
                    topic=message.topic,
                    value=value,
                    key=message.key.encode(),
                    headers=headers,
                )
            ]
        )
        if self._on_published is not None:
            self._on_published([value])


class CandidateQuery(BaseModel):
    """Who may take a stage (or receive an escalation) of one application."""

    role: ReviewerRole = Field(description="The stage's role, or `supervisor` for escalations.")
    application_id: str = Field(description="The application being staffed (for the logs).")


class ReviewDesk:
    """Asks the review desk for reviewer profiles; its bound method is the activity.

    The desk answers ``GET {base_url}/internal/v1/candidates?stage=<role>`` with the active
    reviewers holding that role. Conflict of interest and separation of duties are decided by
    the workflow on the returned profiles, which it keeps as the assignment snapshot.
    """

    def __init__(
        self,
        base_url: str,
        token: TokenFn,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._transport = transport
        #: One TLS context for every call: building one loads the CA bundle, which cost more
        #: CPU than the call itself (the desk is usually plain HTTP, but the client builds it).
        self._tls: ssl.SSLContext | None = None

    @property
    def base_url(self) -> str:
        """The desk's base URL (without a trailing slash)."""
        return self._base_url

    @activity.defn(name="candidate_reviewers")
    async def candidate_reviewers(self, query: CandidateQuery) -> list[ReviewerProfile]:
        """The registry's active reviewers with ``query.role``.

        Raises a retryable ``ApplicationError`` when the desk is unreachable or failing, and a
        non-retryable one when it refuses the request or answers something that is not a list
        of reviewer profiles (retrying would not change the answer).
        """
        url = f"{self._base_url}{CANDIDATES_PATH}"
        # A fresh short-lived token per call: the worker runs far longer than a token lives.
        headers = {"Authorization": f"Bearer {self._token()}"}
        if self._tls is None:
            self._tls = ssl.create_default_context()
        http = httpx.AsyncClient(timeout=self._timeout, transport=self._transport, verify=self._tls)
        async with tracing.instrument_client(http) as client:
            try:
                response = await client.get(
                    url, params={"stage": query.role.value}, headers=headers
                )
            except httpx.HTTPError as exc:
                raise ApplicationError(
                    f"review desk {self._base_url} unreachable: {exc!r}", type="DeskUnavailable"
                ) from exc
        status = response.status_code
        if status >= 500 or status in _TRANSIENT_STATUSES:
            raise ApplicationError(
                f"review desk answered {status} for {query.role.value} candidates",
                type="DeskUnavailable",
            )
        if status >= 400:
            raise ApplicationError(
                f"review desk refused the {query.role.value} candidates request ({status}): "
                f"{response.text[:500]}",
                type="DeskRefused",
                non_retryable=True,
            )
        try:
            return _PROFILES.validate_json(response.content)
        except ValidationError as exc:
            raise ApplicationError(
                f"review desk sent an invalid candidates list: {exc}",
                type="DeskInvalidResponse",
                non_retryable=True,
            ) from exc
