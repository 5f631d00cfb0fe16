"""An edition's rendered copies: made once, kept, reused, previewed.

A copy is rendered once per section preference and stored with a fingerprint of what
it was made from (render_fingerprint), so a send, its resumption and every worker mail
the very copy that was rendered and previewed, and a send that finds its copies current
never loads the render stack. Previews fill the tokens with nobody's values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

# Not digest.render: it loads lxml, premailer and mjml (14 MB), which a send that
# finds its copies rendered already never needs (rendered_copies imports it).
from digest import rank
from digest.config import Settings
from digest.models import Edition, Recipient, RenderedEdition
from digest.send import letter_for
from digest.send.base import Letter
from digest.store import Store
from digest.tokens import fill


def render_fingerprint(settings: Settings, edition: Edition) -> str:
    """What a rendered copy of this edition was made from, as a digest: the edition's
    picks and subject, the newsroom's settings the templates read, the templates and
    the renderer's own code. A stored copy with another fingerprint is stale."""
    state = dataclasses.asdict(edition)
    state.pop("status")  # approving or sending an edition does not change its copy
    state.pop("left_out", None)  # nor does why the other stories are out: it is not mailed
    made_of = hashlib.blake2b(digest_size=16)
    made_of.update(
        json.dumps(
            [
                state,
                repr(settings.newsroom),
                repr(settings.campaign),
                settings.base_url,
                settings.click_tracking,
                settings.click_tracking_per_reader,
            ],
            default=str,
            sort_keys=True,
        ).encode()
    )
    templates = settings.templates_dir
    for path in sorted(p for p in templates.rglob("*") if p.is_file()):
        relative = path.relative_to(templates)
        if relative.parts[0] == "web":  # the web app's pages: no email is made of them
            continue
        made_of.update(str(relative).encode() + b"\0" + path.read_bytes())
    for module in (
        "render.py",
        "render_checks.py",
        "locale.py",
        "palette.py",
        "campaign.py",
        "tokens.py",
        "media.py",
        "note.py",
        "clicks.py",
    ):
        made_of.update(Path(__file__).with_name(module).read_bytes())
    return made_of.hexdigest()


def rendered_copies(
    settings: Settings,
    store: Store,
    edition: Edition,
    variants: Iterable[str],
    *,
    keep: bool = False,
    save: bool = True,
) -> dict[str, RenderedEdition]:
    """Each variant of the edition rendered (rank.variant_key; "" = the whole edition).

    A stored copy is used when it was made from what it would be made from now;
    otherwise the variant is rendered and (with `save`) stored. keep: the edition
    has a send, and its stored copies are what part of the list already got: use
    them as they are, so a resumed send or another worker mails the same thing
    even if the templates changed since.
    """
    fingerprint = ""  # read the templates only if a copy needs checking
    copies: dict[str, RenderedEdition] = {}
    for key in sorted(set(variants)):
        stored = store.editions.load_render(edition.name, key)
        if stored is not None and keep:
            copies[key] = stored[1]
            continue
        fingerprint = fingerprint or render_fingerprint(settings, edition)
        made_of = hashlib.blake2b(f"{fingerprint}|{key}".encode(), digest_size=16).hexdigest()
        if stored is not None and stored[0] == made_of:
            copies[key] = stored[1]
            continue
        from digest import render

        rendered = render.render(settings, rank.variant(edition, key))
        if save:
            store.editions.save_render(key, made_of, rendered)
        copies[key] = rendered
    return copies


def prepare_copies(
    settings: Settings, store: Store, edition: Edition, *, save: bool = True
) -> dict[str, RenderedEdition]:
    """The whole edition and one copy per section preference among today's subscribers."""
    variants = {""} | {
        rank.variant_key(edition, s) for s in store.subscribers.deliverable_sections()
    }
    keep = store.sends.get_send(edition.name) is not None
    return rendered_copies(settings, store, edition, variants, keep=keep, save=save)


def send_variants(store: Store, edition: Edition, send_id: int) -> dict[str, str]:
    """Each section preference a send's batches were cut by -> the copy its readers get."""
    return {
        sections: rank.variant_key(edition, sections)
        for sections in store.sends.send_sections(send_id)
    }


def letters_for_send(
    settings: Settings, store: Store, edition: Edition, send_id: int
) -> tuple[Letter, dict[str, Letter]]:
    """The whole edition's letter, and the letter for each section preference the
    send's batches were cut by: the copies stored for this edition, kept as they are."""
    keys = send_variants(store, edition, send_id)
    copies = rendered_copies(settings, store, edition, {"", *keys.values()}, keep=True)
    letters = {key: letter_for(settings, rendered) for key, rendered in copies.items()}
    return letters[""], {sections: letters[key] for sections, key in keys.items()}


def preview_values(settings: Settings, rendered: RenderedEdition) -> dict[str, str]:
    """Token values for a copy that nobody in particular reads (previews, the web view):
    a reader without a name, as the send stage fills them (the greeting in the
    newsroom's language), with the unsubscribe page that explains itself."""
    return letter_for(settings, rendered).substitutions(
        Recipient(""), f"{settings.base_url}/unsubscribe"
    )


def sent_copy(settings: Settings, store: Store, name: str) -> str | None:
    """The whole edition's HTML as it went out, for the emails' "View in browser" link.

    None until the edition has a send: a draft is the newsroom's until it is sent.
    The reader's own values are filled as for a preview (preview_values).
    """
    if store.sends.get_send(name) is None:
        return None
    stored = store.editions.load_render(name, "")
    if stored is None:
        return None
    return preview_html(settings, stored[1])


def preview_html(settings: Settings, rendered: RenderedEdition) -> str:
    """A rendered copy's HTML with nobody's values in it (preview_values): what an
    editor previews and what the web copy of a sent edition shows."""
    return fill(rendered.html, preview_values(settings, rendered))


def write_edition(
    settings: Settings, rendered: RenderedEdition, out_dir: Path, *, named_by: str = "--out"
) -> tuple[Path, Path]:
    """EDITION.html and EDITION.txt in out_dir; named_by: what named it, for the error."""
    from digest import environment, render

    environment.writable_folder(out_dir, named_by)
    with environment.writing(out_dir, named_by):
        return render.write(rendered, out_dir, preview_values(settings, rendered))
