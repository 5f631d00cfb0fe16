"""The newsroom's nouns, as plain dataclasses passed between stages.

A stage takes these in and gives these out; none of them knows about the
database, a template or a mail API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:  # a type only: models import nothing at run time
    from digest.send.journal import Journal

SubscriberStatus = Literal["active", "unsubscribed", "bounced", "complained"]
#: Statuses an import must never turn back into "active" (DESIGN: never resubscribe).
LEFT_STATUSES: frozenset[str] = frozenset({"unsubscribed", "bounced", "complained"})
Slot = Literal["lead", "more", "most_read", "related"]
#: Why a candidate is in neither the lead nor More (rank.py decides; LeftOut.why says it).
LeftOutReason = Literal["under_cut", "section_cap", "dropped", "led_recently"]


@dataclass
class Story:
    """One article as collected from a source, normalised."""

    url: str  # canonical: tracking parameters removed
    title: str  # plain text
    published_at: datetime  # aware, UTC
    dek: str = ""
    byline: str = ""
    section: str = ""
    image_url: str = ""
    image_caption: str = ""
    image_credit: str = ""
    source: str = ""
    prominence: float = 0.0  # 1.0 = top of its feed, the newsroom's own placement
    #: The story's plain body text where the source gives it (capped; for related
    #: stories, never mailed whole). "" = none given.
    body: str = ""
    id: int | None = None


@dataclass
class PageViews:
    """Page views of one URL on one local day, from an analytics export or a log."""

    url: str
    day: date
    views: int
    source: str = ""


@dataclass
class Pick:
    """A story chosen for a slot of an edition, with why it is there."""

    story: Story
    slot: Slot
    position: int
    score: float
    breakdown: dict[str, float] = field(default_factory=dict)
    views: int = 0
    note: str = ""  # an editor's hand in it ("pinned by an editor"); "" = placed by score
    under: str = ""  # for a "related" pick, the URL of the story it is listed under


@dataclass
class Overrides:
    """An editor's changes to one day's edition, by story URL.

    They are kept apart from the ranking and applied each time the edition is
    ranked again, so a later collect never undoes what an editor decided.
    """

    lead: str = ""  # the story that leads ("" = the top score)
    pinned: list[str] = field(default_factory=list)  # first in "More", in this order
    dropped: list[str] = field(default_factory=list)  # in no slot at all
    subject: str = ""  # "" = the lead's title
    #: The editors' note to readers, under the greeting (digest.note: plain text,
    #: paragraphs and links); "" = none.
    note: str = ""
    related_added: list[str] = field(default_factory=list)  # under the lead, first
    related_dropped: list[str] = field(default_factory=list)  # in no related list

    def __bool__(self) -> bool:
        return bool(
            self.lead
            or self.pinned
            or self.dropped
            or self.subject
            or self.note
            or self.related_added
            or self.related_dropped
        )


@dataclass
class EditorEvent:
    """One thing an editor did to an edition, for the record the preview shows."""

    edition: str
    at: datetime
    who: str
    action: str


@dataclass
class LeftOut:
    """A candidate in neither the lead nor More, and why (it may still be in Most Read)."""

    story: Story
    reason: LeftOutReason
    why: str  # in words, with the numbers: "under the cut: score 0.412, the cut 0.455"
    score: float
    breakdown: dict[str, float] = field(default_factory=dict)


@dataclass
class Edition:
    """One day's digest: what goes where, and the scores behind it."""

    name: str  # the local date, YYYY-MM-DD
    send_at: datetime  # aware, UTC
    window_start: datetime
    window_end: datetime
    subject: str
    preheader: str
    lead: Pick | None
    more: list[Pick] = field(default_factory=list)
    most_read: list[Pick] = field(default_factory=list)
    status: str = "draft"
    note: str = ""  # the editors' note (Overrides.note), as it is mailed
    #: Every candidate in neither the lead nor More, with why, in score order.
    left_out: list[LeftOut] = field(default_factory=list)
    #: Related stories (digest.related), each listed under the story in its `under`.
    related: list[Pick] = field(default_factory=list)

    def related_under(self, url: str) -> list[Pick]:
        return [p for p in self.related if p.under == url]

    @property
    def picks(self) -> list[Pick]:
        return ([self.lead] if self.lead else []) + self.more + self.most_read


@dataclass
class Subscriber:
    email: str
    name: str = ""
    sections: tuple[str, ...] = ()
    status: str = "active"
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class RenderedEdition:
    """An edition rendered once. Per-recipient values are substitution tokens."""

    name: str
    subject: str
    preheader: str
    html: str
    text: str
    warnings: list[str] = field(default_factory=list)
    #: The random key in this copy's substitution tokens (digest.tokens); "" for a copy
    #: rendered before tokens had keys.
    token_key: str = ""


class Recipient(NamedTuple):
    """One person in a batch, with the values substituted into their copy.

    A named tuple rather than a dataclass: a send makes one per reader twice (the
    snapshot, the claim), a million of each for a million readers, and a tuple is
    made faster and goes into the ledger's JSON as it is, as [email, name].
    """

    email: str
    name: str = ""


@dataclass
class Batch:
    """A numbered slice of a send's recipient snapshot (at most 1,000: SendGrid's limit)."""

    send_id: int
    number: int
    recipients: list[Recipient]
    state: str = "pending"
    attempts: int = 0
    #: The recipients' section preference (lower-case, ";"-joined; "" = none): every
    #: recipient of a batch gets the same copy of the edition.
    sections: str = ""
    #: Of a send with a subject test: the subject it goes out with (an index into the
    #: edition's test subjects; digest/store/subjects.py). None: the edition's subject.
    variant: int | None = None
    #: Where a backend that delivers one message at a time records each recipient as
    #: it goes (the ledger hangs one on every claimed batch; digest/send/journal.py).
    #: None outside a send: the backend keeps its tally in memory.
    journal: Journal | None = field(default=None, repr=False, compare=False)
