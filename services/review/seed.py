"""The demo reviewers `incentives up` starts with, so a fresh platform can be walked through.

There are enough of them that one application can pass every stage while each person decides
at most one stage (separation of duties): three technical, two security and one finance reviewer,
and seven committee members, so at least three committee members remain once technical,
security and finance are assigned, and a technical reviewer remains to verify the milestones
of the award that follows. Dr. Tanaka advises the demo firm (Acme Vision AI GmbH), so
an Acme application shows a conflict of interest: she is never assigned to it, and the workflow
refuses her decision on it.
"""

from __future__ import annotations

from contracts.v1.desk import ReviewerProfile, ReviewerRole

#: The actor recorded as ``updated_by`` for seeded rows.
SEED_ACTOR = "system:review"


def demo_reviewers() -> list[ReviewerProfile]:
    """The demo registry, sorted by reviewer id."""
    technical, security, finance = (
        ReviewerRole.TECHNICAL,
        ReviewerRole.SECURITY,
        ReviewerRole.FINANCE,
    )
    committee, supervisor = ReviewerRole.COMMITTEE, ReviewerRole.SUPERVISOR
    reviewers = [
        ReviewerProfile(
            reviewer_id="rev.tanaka@gaip.example",
            name="Dr. Aiko Tanaka",
            roles=[technical, committee],
            affiliations=["Kyoto University", "Acme Vision AI GmbH"],
            ownership_interests=[],
        ),
        ReviewerProfile(
            reviewer_id="rev.silva@gaip.example",
            name="Marta Silva",
            roles=[security, committee],
            affiliations=["National Data Protection Authority", "University of Lisbon"],
            ownership_interests=["Lusitania Cyber Holdings SA"],
        ),
        ReviewerProfile(
            reviewer_id="rev.haddad@gaip.example",
            name="Karim Haddad",
            roles=[finance, committee],
            affiliations=["Ministry of Finance", "Levant Development Bank"],
            ownership_interests=["Cedar Infrastructure Fund"],
        ),
        ReviewerProfile(
            reviewer_id="rev.okafor@gaip.example",
            name="Prof. Chinwe Okafor",
            roles=[committee],
            affiliations=["University of Lagos", "Pan-African AI Research Network"],
            ownership_interests=[],
        ),
        ReviewerProfile(
            reviewer_id="rev.novak@gaip.example",
            name="Dr. Petra Novák",
            roles=[technical, security, committee],
            affiliations=["Czech Technical University in Prague"],
            ownership_interests=["Vltava Robotics s.r.o."],
        ),
        ReviewerProfile(
            reviewer_id="rev.dubois@gaip.example",
            name="Julien Dubois",
            roles=[committee],
            affiliations=["Institut National de Recherche en Informatique"],
            ownership_interests=[],
        ),
        ReviewerProfile(
            reviewer_id="rev.kim@gaip.example",
            name="Dr. Min-jun Kim",
            roles=[committee],
            affiliations=["Korea Advanced Institute of Science and Technology"],
            ownership_interests=["Han River Semiconductor Co., Ltd."],
        ),
        ReviewerProfile(
            reviewer_id="rev.weber@gaip.example",
            name="Jonas Weber",
            roles=[technical],
            affiliations=["Fraunhofer Institute for Applied Information Technology"],
            ownership_interests=[],
        ),
        ReviewerProfile(
            reviewer_id="sup.meyer@gaip.example",
            name="Sabine Meyer",
            roles=[supervisor],
            affiliations=["Global AI Partnerships Programme Office"],
            ownership_interests=[],
        ),
    ]
    return sorted(reviewers, key=lambda r: r.reviewer_id)
