"""Editions: their picks, the editors' overrides and events, and the renders.

The editions, edition_picks, edition_overrides, edition_events and renders tables:
what rank drafted, what the editors changed (and who), and each rendered copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    exists,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection

from digest.models import (
    Edition,
    EditorEvent,
    LeftOut,
    Overrides,
    Pick,
    RenderedEdition,
)
from digest.store.tables import (
    Aggregate,
    _insert_for,
    edition_events,
    edition_overrides,
    edition_picks,
    editions,
    now,
    renders,
    send_batches,
    sends,
    stories,
)


def _pick_row(edition: str, p: Pick, under: int | None = None) -> dict[str, object]:
    """A pick as an edition_picks row; a related pick names the story it is listed under."""
    return {
        "edition": edition,
        "slot": p.slot,
        "position": p.position,
        "story_id": p.story.id,
        "score": p.score,
        "breakdown": json.dumps(p.breakdown, sort_keys=True),
        "views": p.views,
        "note": p.note,
        "under_story_id": under,
    }


@dataclass(frozen=True)
class SentEdition:
    """An edition in the public archive: what went out, and when its send began."""

    name: str
    subject: str
    preheader: str
    sent_at: datetime


@dataclass(frozen=True)
class EditionEntry:
    """An edition as the editors' list shows it: its state and its send's, if any."""

    name: str
    status: str
    subject: str
    send_at: datetime
    send_state: str  # "" = no send


#: An edition is in the archive once some readers have it: a batch of its send went
#: out. A send that only started, or whose every batch failed, reached nobody.
_REACHED_READERS = exists().where(
    send_batches.c.send_id == sends.c.id, send_batches.c.state == "sent"
)


class Editions(Aggregate):
    """The queries of editions, picks, overrides, editor events and renders: `store.editions`."""

    def save_edition(self, edition: Edition) -> None:
        """Store an edition and its picks, replacing an earlier draft of the same name."""
        with self.begin() as conn:
            # Renders of the earlier draft describe other picks: they go with it.
            conn.execute(renders.delete().where(renders.c.edition == edition.name))
            conn.execute(edition_picks.delete().where(edition_picks.c.edition == edition.name))
            conn.execute(editions.delete().where(editions.c.name == edition.name))
            conn.execute(
                editions.insert().values(
                    name=edition.name,
                    send_at=edition.send_at,
                    window_start=edition.window_start,
                    window_end=edition.window_end,
                    subject=edition.subject,
                    preheader=edition.preheader,
                    status=edition.status,
                    updated_at=now(),
                    note=edition.note,
                    left_out=json.dumps(
                        [
                            {
                                "url": o.story.url,
                                "reason": o.reason,
                                "why": o.why,
                                "score": o.score,
                                "breakdown": o.breakdown,
                            }
                            for o in edition.left_out
                        ]
                    ),
                )
            )
            rows = [_pick_row(edition.name, p) for p in edition.picks]
            rows += self._related_rows(conn, edition)
            if rows:
                conn.execute(edition_picks.insert(), rows)

    @staticmethod
    def _related_rows(conn: Connection, edition: Edition) -> list[dict[str, object]]:
        """The edition's related picks as edition_picks rows, each with the id of the
        story it is listed under (by that story's URL among the edition's picks)."""
        ids = {p.story.url: p.story.id for p in edition.picks}
        return [_pick_row(edition.name, p, under=ids.get(p.under)) for p in edition.related]

    def save_related(self, edition: Edition) -> None:
        """Replace an edition's related picks (digest.related), keeping its other picks;
        its renders describe the old list, so they go."""
        with self.begin() as conn:
            conn.execute(renders.delete().where(renders.c.edition == edition.name))
            conn.execute(
                edition_picks.delete().where(
                    edition_picks.c.edition == edition.name, edition_picks.c.slot == "related"
                )
            )
            rows = self._related_rows(conn, edition)
            if rows:
                conn.execute(edition_picks.insert(), rows)

    def load_edition(self, name: str) -> Edition | None:
        with self.begin() as conn:
            row = conn.execute(select(editions).where(editions.c.name == name)).first()
            if row is None:
                return None
            pick_rows = conn.execute(
                select(edition_picks)
                .where(edition_picks.c.edition == name)
                .order_by(edition_picks.c.slot, edition_picks.c.position)
            ).all()
        by_id = self.store.stories.stories_by_id(
            {p.story_id for p in pick_rows} | {p.under_story_id for p in pick_rows} - {None}
        )
        picks = [
            Pick(
                story=by_id[p.story_id],
                slot=p.slot,
                position=p.position,
                score=p.score,
                breakdown=json.loads(p.breakdown),
                views=p.views,
                note=p.note,
                under=by_id[p.under_story_id].url if p.under_story_id in by_id else "",
            )
            for p in pick_rows
        ]
        leads = [p for p in picks if p.slot == "lead"]
        out = json.loads(row.left_out)
        by_url = self.store.stories.stories_by_url(o["url"] for o in out)
        left_out = [
            LeftOut(by_url[o["url"]], o["reason"], o["why"], o["score"], o["breakdown"])
            for o in out
            if o["url"] in by_url
        ]
        return Edition(
            name=row.name,
            send_at=row.send_at,
            window_start=row.window_start,
            window_end=row.window_end,
            subject=row.subject,
            preheader=row.preheader,
            status=row.status,
            lead=leads[0] if leads else None,
            more=[p for p in picks if p.slot == "more"],
            most_read=[p for p in picks if p.slot == "most_read"],
            note=row.note,
            left_out=left_out,
            related=[p for p in picks if p.slot == "related"],
        )

    def set_edition_status(self, name: str, status: str) -> None:
        with self.begin() as conn:
            conn.execute(
                update(editions)
                .where(editions.c.name == name)
                .values(status=status, updated_at=now())
            )

    def load_overrides(self, edition: str) -> Overrides:
        return self.overrides_revision(edition)[0]

    def overrides_revision(self, edition: str) -> tuple[Overrides, int]:
        """An edition's overrides and their revision (0 = none yet), for save_overrides."""
        with self.begin() as conn:
            row = conn.execute(
                select(edition_overrides).where(edition_overrides.c.edition == edition)
            ).first()
        if row is None:
            return Overrides(), 0
        overrides = Overrides(
            lead=row.lead,
            pinned=json.loads(row.pinned),
            dropped=json.loads(row.dropped),
            subject=row.subject,
            note=row.note,
            related_added=json.loads(row.related_added),
            related_dropped=json.loads(row.related_dropped),
        )
        return overrides, row.revision

    def save_overrides(
        self, edition: str, overrides: Overrides, revision: int, who: str, actions: list[str]
    ) -> bool:
        """Replace an edition's overrides, if they are still at `revision`, and record what
        changed, in one transaction. False when another editor saved first: load again."""
        at = now()
        values = {
            "lead": overrides.lead,
            "pinned": json.dumps(overrides.pinned),
            "dropped": json.dumps(overrides.dropped),
            "subject": overrides.subject,
            "note": overrides.note,
            "related_added": json.dumps(overrides.related_added),
            "related_dropped": json.dumps(overrides.related_dropped),
            "updated_at": at,
            "revision": revision + 1,
        }
        with self.begin() as conn:
            if revision == 0:
                statement = (
                    _insert_for(conn, edition_overrides)
                    .values(edition=edition, **values)
                    .on_conflict_do_nothing()
                )
            else:
                statement = (
                    update(edition_overrides)
                    .where(
                        edition_overrides.c.edition == edition,
                        edition_overrides.c.revision == revision,
                    )
                    .values(**values)
                )
            if conn.execute(statement).rowcount != 1:
                return False
            self._log_events(conn, edition, who, actions, at)
        return True

    def log_edition_event(self, edition: str, who: str, action: str) -> None:
        with self.begin() as conn:
            self._log_events(conn, edition, who, [action], now())

    @staticmethod
    def _log_events(
        conn: Connection, edition: str, who: str, actions: list[str], at: datetime
    ) -> None:
        if actions:
            conn.execute(
                edition_events.insert(),
                [{"edition": edition, "at": at, "who": who, "action": a} for a in actions],
            )

    def edition_events(self, edition: str, limit: int = 50) -> list[EditorEvent]:
        """The latest of what editors did to an edition, oldest first."""
        with self.begin() as conn:
            rows = conn.execute(
                select(edition_events)
                .where(edition_events.c.edition == edition)
                .order_by(edition_events.c.id.desc())
                .limit(limit)
            ).all()
        return [EditorEvent(r.edition, r.at, r.who, r.action) for r in reversed(rows)]

    def save_render(self, variant: str, fingerprint: str, rendered: RenderedEdition) -> None:
        """Keep a rendered copy of an edition, replacing the variant's earlier one."""
        with self.begin() as conn:
            key = (renders.c.edition == rendered.name) & (renders.c.variant == variant)
            conn.execute(renders.delete().where(key))
            conn.execute(
                renders.insert().values(
                    edition=rendered.name,
                    variant=variant,
                    fingerprint=fingerprint,
                    subject=rendered.subject,
                    preheader=rendered.preheader,
                    html=rendered.html,
                    text=rendered.text,
                    warnings=json.dumps(rendered.warnings),
                    created_at=now(),
                    token_key=rendered.token_key,
                )
            )

    def load_render(self, edition: str, variant: str) -> tuple[str, RenderedEdition] | None:
        """(fingerprint, rendered copy) of one variant of an edition, if it was rendered."""
        with self.begin() as conn:
            row = conn.execute(
                select(renders).where(renders.c.edition == edition, renders.c.variant == variant)
            ).first()
        if row is None:
            return None
        return row.fingerprint, RenderedEdition(
            name=row.edition,
            subject=row.subject,
            preheader=row.preheader,
            html=row.html,
            text=row.text,
            warnings=json.loads(row.warnings),
            token_key=row.token_key,
        )

    def recent_leads(self, before: str, count: int) -> dict[str, str]:
        """Story URL -> the edition it led, for the `count` editions with a send (readers
        got them) dated before `before`."""
        if count <= 0:
            return {}
        with self.begin() as conn:
            recent = (
                select(sends.c.edition)
                .where(sends.c.edition < before)
                .order_by(sends.c.edition.desc())
                .limit(count)
                .subquery()
            )
            rows = conn.execute(
                select(stories.c.url, edition_picks.c.edition)
                .join(stories, stories.c.id == edition_picks.c.story_id)
                .where(
                    edition_picks.c.slot == "lead",
                    edition_picks.c.edition.in_(select(recent.c.edition)),
                )
                .order_by(edition_picks.c.edition)
            ).all()
        return {url: name for url, name in rows}  # the latest edition it led wins

    def edition_names(self) -> list[str]:
        with self.begin() as conn:
            return list(conn.scalars(select(editions.c.name).order_by(editions.c.name.desc())))

    def sent_editions(self, limit: int, offset: int = 0) -> list[SentEdition]:
        """The archive, newest first: editions some readers got, with the subject and
        preheader of the copy that went out (the one the web copy shows)."""
        query = (
            select(renders.c.edition, renders.c.subject, renders.c.preheader, sends.c.created_at)
            .join(sends, sends.c.edition == renders.c.edition)
            .where(renders.c.variant == "", _REACHED_READERS)
            .order_by(renders.c.edition.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.begin() as conn:
            return [SentEdition(*row) for row in conn.execute(query)]

    def count_sent_editions(self) -> int:
        query = (
            select(func.count())
            .select_from(renders.join(sends, sends.c.edition == renders.c.edition))
            .where(renders.c.variant == "", _REACHED_READERS)
        )
        with self.begin() as conn:
            return int(conn.scalar(query) or 0)

    def edition_entries(self, *, sent: bool, limit: int | None = None) -> list[EditionEntry]:
        """Editions newest first, for the editors' list: with a send (`sent`), or without."""
        query = (
            select(
                editions.c.name,
                editions.c.status,
                editions.c.subject,
                editions.c.send_at,
                func.coalesce(sends.c.state, ""),
            )
            .outerjoin(sends, sends.c.edition == editions.c.name)
            .where(sends.c.id.is_not(None) if sent else sends.c.id.is_(None))
            .order_by(editions.c.name.desc())
            .limit(limit)
        )
        with self.begin() as conn:
            return [EditionEntry(*row) for row in conn.execute(query)]
