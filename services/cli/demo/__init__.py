"""``incentives demo``: synthetic load through the public APIs, chaos, and the final check.

- :mod:`.api`: where the platform's APIs listen, the tokens, and requests that ride out a part
  being down or restarted;
- :mod:`.load`: synthetic firms and applications, the automated reviewers, offers and milestones,
  and the summary of a run;
- :mod:`.chaos`: SIGKILL of a random part every few seconds while the load runs;
- :mod:`.checks`: what the APIs and the audit log say at the end: nothing lost, duplicated,
  stuck, over-allocated, paid twice or over budget, and every record logged once.
"""
