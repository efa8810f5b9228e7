"""Chaos and restarts on the real embedded platform, with the demo load running through it.

Everything real: ``incentives up`` on free ports with its own var dir (Tansu, the Temporal dev
server, every service, the worker and the rail, each with its SQLite default), and
``incentives demo`` as a separate process driving synthetic firms, reviewers and offers through
the public APIs. Each test ends with the demo's final check: nothing lost, duplicated, stuck,
over-allocated, paid twice or over budget, and every record logged once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from services.cli.demo.chaos import DEFAULT_PARTS
from services.cli.state import read_state
from tests.platform.chaos_run import embedded_platform, run_demo, start_demo
from tests.platform.helpers import PlatformRun
from tests.review.helpers import ADMIN

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


#: The parts killed in turn: every default part but the broker, which has tests of its own
#: below (killed in turn among the others it would only be one more kill every 8 s).
IN_TURN_PARTS = [part for part in DEFAULT_PARTS if part != "broker"]
#: Journeys of the in-turn run.
IN_TURN_APPLICATIONS = 10


#: Applications of the short chaos run; the 1,000-application bench runs a longer one.
SHORT_RUN_APPLICATIONS = 20
#: Kills the short run makes, one every 10 s, however soon or late its journeys finish: once
#: they all rest it goes on killing until this many were made; after them it kills no more.
SHORT_RUN_KILLS = 5


@pytest.mark.timeout(600)
def test_a_short_chaos_run_loses_nothing(tmp_path: Path) -> None:
    """Applications to their last tranche while a random part is SIGKILLed every 10 s.

    The parts are every service on the journey, the worker, the rail and the broker (with seed
    7: disbursement, eligibility, review, the broker, applications). Every 5 s, on two shared
    cores, each part died again within a minute of coming back, so the supervisor's backoff
    kept it down for 30 s at a time and the journeys hardly moved (an outage, not a crash); at
    10 s each part mostly runs a minute between two kills.
    ``--kills`` fixes the count of kills: journeys that finish after three kills no longer end
    the run short of five, and a slow run is not killed on and on (22 kills in 5 minutes on a
    loaded host without it).
    """
    started = time.monotonic()
    with embedded_platform(tmp_path) as run:
        result = run_demo(
            run,
            "chaos",
            "--applications",
            str(SHORT_RUN_APPLICATIONS),
            "--kill-every",
            "10",
            "--kills",
            str(SHORT_RUN_KILLS),
            "--seed",
            "7",
            timeout=480,
        )
    kills = sum(result.figures.get("kills_per_part", {}).values())
    print(f"short chaos run: {time.monotonic() - started:.0f} s, {kills} kills")
    print(result.output[-4000:])
    assert result.losses() == {}, result.output[-4000:]
    assert result.returncode == 0, result.output[-4000:]
    assert result.figures["end_states"] == {"completed": SHORT_RUN_APPLICATIONS}
    assert kills == SHORT_RUN_KILLS, result.output[-4000:]


#: Applications of the broker-loss run, and the kills of the broker it makes.
BROKER_LOSS_APPLICATIONS = 12
BROKER_LOSS_KILLS = 2


@pytest.mark.resilience
@pytest.mark.timeout(600)
def test_a_broker_lost_mid_run_comes_back_empty_and_every_journey_completes(
    tmp_path: Path,
) -> None:
    """The embedded broker SIGKILLed twice while twelve journeys run; each time the supervisor
    starts it again empty, and every service notices a broker it has not published to and
    republishes its outbox (services/kit/republish.py).

    The demo's final check reads the APIs and the audit log: every application completes,
    none was decided, allocated or paid twice, and the log holds each record exactly once,
    although every outbox was published to three brokers.
    """
    started = time.monotonic()
    with embedded_platform(tmp_path) as run:
        result = run_demo(
            run,
            "chaos",
            "--applications",
            str(BROKER_LOSS_APPLICATIONS),
            "--parts",
            "broker",
            "--kill-every",
            "15",
            "--kills",
            str(BROKER_LOSS_KILLS),
            "--seed",
            "9",
            timeout=480,
        )
    print(f"broker-loss run: {time.monotonic() - started:.0f} s")
    print(result.output[-4000:])
    assert result.losses() == {}, result.output[-4000:]
    assert result.returncode == 0, result.output[-4000:]
    assert result.figures["kills_per_part"] == {"broker": BROKER_LOSS_KILLS}
    assert result.figures["end_states"] == {"completed": BROKER_LOSS_APPLICATIONS}


@pytest.mark.resilience
@pytest.mark.timeout(1800)
def test_sigkill_of_each_part_in_turn_mid_journey_and_every_journey_completes(
    tmp_path: Path,
) -> None:
    """Every service, the worker and the rail SIGKILLed in turn, one every 8 s, while ten
    journeys run: each part dies at least once mid-journey, and every journey completes.

    The submissions are spread over the round of kills (on a quiet machine ten journeys at
    once finished in 16 s, after the first kill), and the run makes exactly one
    kill per part.
    """
    parts = [arg for part in IN_TURN_PARTS for arg in ("--parts", part)]
    kill_every = 8
    rate = IN_TURN_APPLICATIONS / (kill_every * len(IN_TURN_PARTS))
    with embedded_platform(tmp_path) as run:
        result = run_demo(
            run,
            "chaos",
            "-n",
            str(IN_TURN_APPLICATIONS),
            "--rate",
            f"{rate:.4f}",
            "--kill-every",
            str(kill_every),
            "--kills",
            str(len(IN_TURN_PARTS)),
            "--in-turn",
            *parts,
            timeout=1500,
        )
    assert result.losses() == {}, result.output[-4000:]
    assert result.returncode == 0, result.output[-4000:]
    assert result.figures["kills_per_part"] == dict.fromkeys(IN_TURN_PARTS, 1), result.output[
        -4000:
    ]
    assert result.figures["end_states"] == {"completed": IN_TURN_APPLICATIONS}


@pytest.mark.resilience
@pytest.mark.timeout(1500)
def test_sigkill_of_the_broker_mid_journey_and_every_journey_completes(tmp_path: Path) -> None:
    """The broker SIGKILLed every 8 s while four journeys run: every journey completes."""
    with embedded_platform(tmp_path) as run:
        result = run_demo(
            run, "chaos", "-n", "4", "--parts", "broker", "--kill-every", "8", timeout=1200
        )
    assert result.losses() == {}, result.output[-4000:]
    assert result.returncode == 0, result.output[-4000:]
    assert result.figures["kills_per_part"].get("broker", 0) >= 1, result.output[-4000:]
    assert result.figures["end_states"] == {"completed": 4}


def _listed(run: PlatformRun) -> int:
    """How many applications the applications service lists (0 while it does not answer)."""
    port = run.ports["applications"]
    try:
        page = httpx.get(
            f"http://127.0.0.1:{port}/v1/applications",
            params={"limit": 100},
            headers=ADMIN,
            timeout=5,
        )
    except httpx.HTTPError:
        return 0
    return len(page.json()["items"]) if page.status_code == 200 else 0


@pytest.mark.resilience
@pytest.mark.timeout(1800)
def test_down_then_up_with_applications_in_flight(tmp_path: Path) -> None:
    """``down`` and ``up`` while ten journeys run: the broker comes back empty, the outboxes
    are republished, and every journey completes."""
    with embedded_platform(tmp_path) as run:
        proc, figures_path = start_demo(
            run, "load", "-n", "10", "--auto-review", "--accept-offers", "--rate", "1", "--check"
        )
        try:
            deadline = time.monotonic() + 120
            while _listed(run) < 4:  # some journeys are under way
                assert proc.poll() is None, proc.communicate()[0][-4000:]
                assert time.monotonic() < deadline, "no application submitted in 120 s"
                time.sleep(0.2)
            before = read_state(tmp_path)
            assert before is not None
            down = run.incentives("down", timeout=180)
            assert down.returncode == 0, down.stdout + down.stderr
            up = run.incentives("up", "--detach", *run.port_options(), timeout=300)
            assert up.returncode == 0, up.stdout + up.stderr
            output, _ = proc.communicate(timeout=1200)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        figures = json.loads(figures_path.read_text())
        assert proc.returncode == 0, output[-4000:]
        assert figures["stuck"] == 0, output[-4000:]
        assert figures["end_states"] == {"completed": 10}, output[-4000:]
        assert all(n == 0 for n in figures["check"].values()), output[-4000:]
